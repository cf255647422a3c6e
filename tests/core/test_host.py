"""A Session runs against any Host: here a tiny one that is not the Router and has nothing else."""

import ast
import asyncio
import inspect
from pathlib import Path

import bridge.session
from bridge.config import BridgeSection
from bridge.events import Connected, Disconnected, Message, Reason, Room, ServerNotice, Start, Waiting
from bridge.host import Host
from bridge.metrics import Metrics
from bridge.policy.config import PolicySection
from bridge.policy.moderator import Moderator
from bridge.reports import RecentChats
from bridge.session import Session
from bridge.store import MemoryStore
from tests.core.scripted import ScriptedBackend, ScriptedConfig

HOST_MEMBERS = {
    name for name, _ in inspect.getmembers(Host) if not name.startswith("_")
} | set(Host.__annotations__)


class TinyHost:
    """Exactly the Host members, each one a few lines; any other attribute is an AttributeError."""

    __slots__ = ("settings", "metrics", "backends", "recent", "moderator", "shown", "saved", "forgotten", "retired", "changed")

    def __init__(self, backend: ScriptedBackend) -> None:
        self.settings = BridgeSection()
        self.metrics = Metrics()
        self.backends = {backend.name: backend}
        self.recent = RecentChats(60, 10)
        self.moderator = Moderator(PolicySection(), MemoryStore())
        self.shown: list = []
        self.saved: list = []
        self.forgotten: list = []
        self.retired: list = []
        self.changed = asyncio.Event()

    @property
    def closing(self) -> bool:
        return False

    def backend_for(self, platform: str) -> str:
        return "s"

    def max_message_length(self, backend: str | None) -> int:
        return 100

    async def deliver(self, room: Room, event) -> bool:
        self.shown.append(event)
        self.changed.set()
        return True

    def spawn_notice(self, room: Room, text: str) -> None:
        self.shown.append(ServerNotice(text))
        self.changed.set()

    async def save(self, record) -> None:
        self.saved.append(record)

    def queue_save(self, session, state, due: float | None = None) -> None:
        if due is None:
            session.put_save(state)
        else:
            asyncio.get_running_loop().call_at(due, session.put_save, state)

    async def forget(self, room: Room) -> None:
        self.forgotten.append(room)

    def retire(self, session) -> bool:
        self.retired.append(session)
        return True

    async def wait_for(self, kind: type):
        async with asyncio.timeout(5):
            while not any(isinstance(e, kind) for e in self.shown):
                self.changed.clear()
                await self.changed.wait()


def test_tiny_host_has_exactly_the_host_members():
    public = {n for n in dir(TinyHost) if not n.startswith("_")} - {"shown", "saved", "forgotten", "retired", "changed", "wait_for"}
    assert public == HOST_MEMBERS
    assert len(HOST_MEMBERS) <= 14  # a small interface, not the router again


def test_the_session_module_does_not_import_the_router():
    tree = ast.parse(Path(inspect.getfile(bridge.session)).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not {".router", "bridge.router"} & imported, imported


async def test_a_session_chats_against_a_host_that_is_not_the_router():
    backend = ScriptedBackend("s", ScriptedConfig(plugin="scripted"))
    host = TinyHost(backend)
    room = Room("tiny", "1")
    session = Session(room, host)
    session.task = asyncio.get_running_loop().create_task(session.run())
    assert session.put_user(Start())
    chat = await backend.next_chat(0)
    await host.wait_for(Waiting)
    chat.stranger(Connected(), Message("hello from afar"))
    await host.wait_for(Message)
    session.put_user(Message("hi back"))
    session.put_user(Disconnected())
    await host.wait_for(Disconnected)
    await asyncio.wait_for(session.task, 5)  # idle and empty: it retired through the host at once
    assert [type(e) for e in host.shown] == [Waiting, Connected, Message, Disconnected]
    assert host.shown[-1] == Disconnected(reason=Reason.USER)
    assert chat.sent == [Message("hi back")]
    assert host.saved and host.forgotten == [room] and host.retired == [session]
    assert host.recent.take(room) is chat  # kept for a report, outside the session
