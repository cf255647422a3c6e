"""One web client's message references (rich relay): its line ids, what it may edit, delete and react to, and the caps."""

from __future__ import annotations

import re
from collections import OrderedDict

from bridge.bucket import TokenBucket

__all__ = [
    "Book",
    "EMOJI",
    "Line",
    "MAX_EDITS",
    "MAX_LINES",
    "MAX_REACTIONS",
    "OWN_ID",
    "RichError",
]

# The page's fixed reaction set; what the other side reacts with may be any short text.
EMOJI = ("👍", "❤️", "😂", "😮", "😢", "🙏")
MAX_LINES = 500  # lines a client remembers (the page keeps as many for a reload); older ones are forgotten
MAX_EDITS = 10  # edits of one message relayed from this client (the core caps as well)
MAX_REACTIONS = 20  # reaction changes on one message relayed from this client
REACT_RATE, REACT_BURST = 4.0, 12  # reaction changes per second from one client (beyond: 429)
# The page names its own lines "u1", "u2", ...; the platform names stranger lines "s1", "s2", ...
OWN_ID = re.compile(r"u[1-9][0-9]{0,8}")
_ANY_ID = re.compile(r"[us][1-9][0-9]{0,8}")


class RichError(ValueError):
    """A rich request this client may not make; `status` is the HTTP answer (400, 409 or 429)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


class Line:
    """What the book knows of one line shown to the client."""

    __slots__ = ("own", "edits", "reactions", "mine", "deleted")

    def __init__(self, own: bool) -> None:
        self.own = own  # the client's own message (it may edit and delete it)
        self.edits = 0
        self.reactions = 0  # reaction changes relayed from this client
        self.mine: set[str] | None = None  # emoji this client has on the line now (made on the first)
        self.deleted = False


class Book:
    """The lines of one client's chat, newest last, at most MAX_LINES of them."""

    __slots__ = ("lines", "strangers", "owns", "bucket", "track")

    def __init__(self, track: bool = True) -> None:
        # track=False: a plain Omegle client, which cannot act on lines: only ids are handed out
        self.track = track
        self.lines: OrderedDict[str, Line] = OrderedDict()
        self.strangers = 0  # stranger lines named so far
        self.owns = 0  # own lines the platform named (the no-JS chat; the page names its own)
        self.bucket: TokenBucket | None = None  # made on the first reaction

    def _add(self, line_id: str, line: Line) -> None:
        if not self.track:
            return
        self.lines[line_id] = line
        while len(self.lines) > MAX_LINES:
            self.lines.popitem(last=False)

    def stranger_line(self) -> str:
        """A new id for a stranger's line (answered to the core with Posted)."""
        self.strangers += 1
        line_id = f"s{self.strangers}"
        self._add(line_id, Line(own=False))
        return line_id

    def mint_own(self) -> str:
        """A new id for the user's message, named by the platform (the no-JS chat)."""
        while True:
            self.owns += 1
            line_id = f"u{self.owns}"
            if line_id not in self.lines:
                self._add(line_id, Line(own=True))
                return line_id

    def own_line(self, line_id: str) -> None:
        """Take the page's id for the user's new message. Raises RichError."""
        if not OWN_ID.fullmatch(line_id):
            raise RichError(400, "ref must be u1, u2, ...")
        if line_id in self.lines:
            raise RichError(409, "that ref is taken")
        self._add(line_id, Line(own=True))

    def find(self, line_id: str | None) -> Line:
        """A line the client may act on. Raises RichError for a malformed, unknown or deleted id."""
        if not line_id or not _ANY_ID.fullmatch(line_id):
            raise RichError(400, "ref is not a line id")
        line = self.lines.get(line_id)
        if line is None:
            raise RichError(409, "no such line in this chat")
        if line.deleted:
            raise RichError(409, "that line was deleted")
        return line

    def edit(self, line_id: str | None) -> None:
        """Check and count an edit of the client's own message. Raises RichError."""
        line = self.find(line_id)
        if not line.own:
            raise RichError(409, "only your own messages can be edited")
        if line.edits >= MAX_EDITS:
            raise RichError(429, "that message was edited too often")
        line.edits += 1

    def retract(self, line_id: str | None) -> None:
        """Check and mark a deletion of the client's own message. Raises RichError."""
        line = self.find(line_id)
        if not line.own:
            raise RichError(409, "only your own messages can be deleted")
        line.deleted = True

    def react(self, line_id: str | None, emoji: str | None, add: bool, now: float | None = None) -> bool:
        """Check and record a reaction change; False when it changes nothing (already there, or
        not there to remove). Raises RichError (429 beyond the rate or the per-message cap)."""
        if emoji not in EMOJI:
            raise RichError(400, "emoji must be one of " + " ".join(EMOJI))
        line = self.find(line_id)
        if (line.mine is not None and emoji in line.mine) == add:
            return False
        if self.bucket is None:
            self.bucket = TokenBucket(REACT_RATE, REACT_BURST, now=now)
        if line.reactions >= MAX_REACTIONS:
            raise RichError(429, "too many reactions on that message")
        if not self.bucket.allow(now):
            raise RichError(429, "too many reactions at once")
        line.reactions += 1
        if line.mine is None:
            line.mine = set()
        if add:
            line.mine.add(emoji)
        else:
            line.mine.discard(emoji)
        return True

    def reply_target(self, line_id: str | None) -> str | None:
        """The line a new message answers (None: no reply). Raises RichError."""
        if line_id is None or line_id == "":
            return None
        self.find(line_id)
        return line_id

    def forget_deleted(self, line_id: str) -> None:
        """The other side deleted its line: nothing more may act on it."""
        line = self.lines.get(line_id)
        if line is not None:
            line.deleted = True
