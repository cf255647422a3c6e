"""One member's side of a hub chat whose other members may live on other instances, and its copy of the conversation."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import TYPE_CHECKING, Any

from bridge.events import Edit, Event, Message, Reaction, Report, Retract, Start, StoppedTyping, Typing

from .pool import ASK, GROUP
from .queued import END, QueuedChat
from .redis_pool import Entry

if TYPE_CHECKING:
    from .shared import SharedHub

__all__ = ["Conversation", "SharedChat"]

RELAYED = (Message, Typing, StoppedTyping, Edit, Retract, Reaction)


class Conversation:
    """One instance's copy of a live chat: who is in it (entry id, owner instance, user) and who is still there."""

    __slots__ = ("cid", "kind", "ids", "owners", "users", "pairings", "alive", "question", "common")

    def __init__(self, desc: dict[str, Any]) -> None:
        self.cid = str(desc["cid"])
        self.kind = str(desc["kind"])
        self.ids = [str(m[0]) for m in desc["members"]]
        self.owners = {str(m[0]): str(m[1]) for m in desc["members"]}
        self.users = {str(m[0]): str(m[2]) for m in desc["members"]}  # moderation keys (reports, strikes)
        self.pairings = {str(m[0]): str(m[3] if len(m) > 3 else m[2]) for m in desc["members"]}  # cool-downs
        self.alive = list(self.ids)
        self.question = desc.get("question")
        self.common = tuple(desc.get("common") or ())

    def label(self, viewer: str, speaker: str) -> str | None:
        """How `viewer` names `speaker` (as plugins/hub/backend.py's conversations do): None one-to-one."""
        if self.kind == ASK:
            if viewer != self.ids[0]:
                return None
            return f"Stranger {self.ids.index(speaker)}"
        if self.kind == GROUP:
            others = [m for m in self.ids if m != viewer]
            return f"Stranger {others.index(speaker) + 1}"
        return None


class SharedChat(QueuedChat):
    """One member's side of a hub conversation whose other members may live on other instances."""

    __slots__ = ("hub", "start", "kind", "entry", "conversation", "fallback", "seq")
    enforces_blocks = True  # blocks are kept in Redis for every instance, for block_days
    rich = True  # edits, deletions, reactions, references and pictures travel as they are (plugins/hub/wire.py)

    def apart_days(self) -> float | None:
        return self.hub.config.block_days

    @property
    def handle(self) -> str | None:  # type: ignore[override]
        """The conversation as this instance knows it and this member's entry id, for `SharedHub.resume`."""
        conv, entry = self.conversation, self.entry
        if conv is None or entry is None or entry.id not in conv.alive or self.hub.config.resume_window <= 0:
            return None
        members = [[m, conv.owners[m], conv.users[m], conv.pairings[m]] for m in conv.ids]
        return json.dumps({"cid": conv.cid, "kind": conv.kind, "members": members, "me": entry.id,
                           "question": conv.question, "common": list(conv.common), "alive": conv.alive})

    @property
    def survives_restart(self) -> bool:
        """Whether a stop may leave this chat for this instance's next run (the others are not told)."""
        return self.handle is not None

    def __init__(self, hub: SharedHub, start: Start, kind: str) -> None:
        super().__init__()
        self.hub = hub
        self.start = start
        self.kind = kind
        self.entry: Entry | None = None
        self.conversation: Conversation | None = None
        self.fallback: asyncio.TimerHandle | None = None
        self.seq = itertools.count(1)

    def stranger_key(self) -> str | None:
        conv, entry = self.conversation, self.entry
        if conv is None or entry is None or conv.kind in (ASK, GROUP) or len(conv.ids) != 2:
            return None
        return next(conv.users[m] for m in conv.ids if m != entry.id)

    async def send(self, event: Event) -> None:
        if type(event) is Report:  # also after the chat ended: "report" is often pressed then
            await self.hub.report(self)
            return
        conv, entry = self.conversation, self.entry
        if self.closed or conv is None or entry is None or entry.id not in conv.alive:
            return
        if conv.kind == ASK and conv.ids[0] == entry.id:
            return  # the spy only watches
        if type(event) in RELAYED:
            self.hub.relay_event(self, event)

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.queue.put_nowait(END)
        await self.hub.leave(self)
