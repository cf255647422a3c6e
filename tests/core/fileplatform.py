"""A platform for daemon-level tests: user events come from a JSON-lines file, shown events go to another."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

from bridge import events as ev
from bridge.abc import Platform, PluginConfig
from bridge.events import Event, Room


class FileConfig(PluginConfig):
    inbox: Path
    outbox: Path
    rooms_persist: bool = False  # as Discord's and Matrix's: a stop may leave hub chats for the next run


KINDS = {cls.__name__: cls for cls in (ev.Start, ev.Report, ev.Message, ev.Typing, ev.StoppedTyping, ev.Disconnected)}


def encode(room: Room, event: Event) -> str:
    data = {k: (v.value if hasattr(v, "value") else v) for k, v in dataclasses.asdict(event).items()}
    return json.dumps({"room": room.id, "type": type(event).__name__, **data})


def decode(line: str) -> tuple[str, Event]:
    data = json.loads(line)
    room, kind = data.pop("room"), data.pop("type")
    if "mode" in data:
        data["mode"] = ev.Mode(data["mode"])
    if "interests" in data:
        data["interests"] = tuple(data["interests"])
    return room, KINDS[kind](**data)


class FilePlatform(Platform):
    """Tails `inbox` for user events; appends every delivered event to `outbox`."""

    Config = FileConfig

    @property
    def rooms_persist(self) -> bool:
        return self.config.rooms_persist

    async def run(self) -> None:
        # The cursor persists like a real platform's last seen id: advanced after handing events on.
        offset = int(await self.state.get("offset") or 0)
        while True:
            if self.config.inbox.exists():
                data = self.config.inbox.read_text()
                lines, offset_new = data[offset:], len(data)
                if lines.endswith("\n"):
                    offset = offset_new
                    for line in lines.splitlines():
                        if line.strip():
                            room, event = decode(line)
                            self.submit(Room(self.name, room), event)
                    await self.state.set("offset", str(offset))
            await asyncio.sleep(0.02)

    async def deliver(self, room: Room, event: Event) -> None:
        with self.config.outbox.open("a") as out:
            out.write(encode(room, event) + "\n")
