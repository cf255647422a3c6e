"""Moderation subjects: how an operator writes whom to ban (PLATFORM:USER, a Matrix server glob) and the store key it names."""

from __future__ import annotations

import re

from ..identity import user_key

__all__ = ["SubjectError", "is_glob", "subject_key"]

# Platforms whose user ids the CLI takes in their native form and hashes like the platform does.
_HASHED = ("discord", "matrix")
_KEY = re.compile(r"[0-9a-f]{16}")
_PLATFORM = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_SERVER_GLOB = re.compile(r"[a-z0-9.*?:\[\]-]{1,255}")


class SubjectError(ValueError):
    """A subject that is not written PLATFORM:USER."""


def subject_key(subject: str) -> str:
    """The store key of `subject` written PLATFORM:USER.

    Discord user ids and Matrix ids are hashed exactly as those platforms hash them for the core
    (bridge.identity.user_key), so "discord:80351110224678912" bans the person the core sees.
    A key as the log shows it (PLATFORM: and 16 hex digits), a web key or a hashed address is
    taken as it is. A Matrix server glob ("matrix:*:example.org", "matrix:*:*.example.org")
    stays a glob; it bans every user of the matching homeservers.
    """
    platform, sep, user = subject.strip().partition(":")
    platform = platform.lower()
    if not sep or not user or not _PLATFORM.fullmatch(platform):
        raise SubjectError(f"{subject!r}: write the subject as PLATFORM:USER (discord:USER_ID, matrix:@user:server)")
    if is_glob(f"{platform}:{user}"):
        server = user.removeprefix("*:").lower()
        if not user.startswith("*:") or not _SERVER_GLOB.fullmatch(server):
            raise SubjectError(f"{subject!r}: a Matrix glob bans whole servers: write matrix:*:SERVER (globs allowed in SERVER)")
        return f"matrix:*:{server}"
    if _KEY.fullmatch(user) or platform not in _HASHED:
        return f"{platform}:{user}"
    return user_key(platform, user)


def is_glob(key: str) -> bool:
    """Whether a subject key is a Matrix server glob (matched against a server name, not looked up)."""
    return key.startswith("matrix:") and ("*" in key or "?" in key)
