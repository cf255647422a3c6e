"""Suite-wide settings: every test's network traffic stays on 127.0.0.1; the real Synapse's tests share one worker."""

import os

import pytest

os.environ.setdefault("NO_PROXY", "*")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Under pytest-xdist (`--dist loadgroup`) every test that uses the session's real Synapse runs in one
    # worker, so the suite starts one Synapse, not one per worker.
    for item in items:
        if "synapse" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("synapse"))
