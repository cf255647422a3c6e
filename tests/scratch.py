"""Scratch directories that live as long as the test process: one parent per process, removed at exit."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile

__all__ = ["scratch_dir"]


@functools.cache
def _parent() -> str:
    parent = tempfile.mkdtemp(prefix="sb-tests-")
    # Key stores are opened by clients that a test may leave to the garbage collector, so a
    # test-scoped cleanup could remove them under a live client; the process's end cannot.
    atexit.register(shutil.rmtree, parent, True)
    return parent


def scratch_dir(prefix: str) -> str:
    """A new empty directory, removed with everything in it when this process exits."""
    return tempfile.mkdtemp(prefix=prefix, dir=_parent())
