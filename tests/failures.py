"""The oracle of "one failure, one notice" (issue 9 item 17) for the stranger backends' tests."""

from __future__ import annotations

from bridge.events import Disconnected, Reason, ServerNotice, Waiting

__all__ = ["told_once"]


def told_once(rec, room: str, since: int, reasons=(Reason.ERROR, Reason.REFUSED)) -> ServerNotice | None:
    """What `room` was shown after its first `since` events is exactly one failure: at most one
    notice of the backend's own, directly followed by the final Disconnected (and nothing after).
    Returns that notice (None when the backend left the saying to the generic end)."""
    after = [e for e in rec.events(room)[since:] if not isinstance(e, Waiting)]
    assert after and isinstance(after[-1], Disconnected), after
    end = after[-1]
    assert end.final and end.reason in reasons, end
    assert [type(e) for e in after] in ([Disconnected], [ServerNotice, Disconnected]), after
    return after[0] if len(after) == 2 else None
