"""A small remandzana-compatible server (aiohttp) following protocols.md §2, quirks and fault knobs included."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

HEARTBEAT = "\n<b><b><b></b></b></b>"
NAMES = ("Alice", "Bob", "Charlie")


def esc(text: str) -> str:
    """Escape like MarkupSafe (what the real server's templates use)."""
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;").replace("'", "&#39;")
    )


def name_html(name: str, you: bool = False) -> str:
    suffix = ' <span class="you">(You)</span>' if you else ""
    return f'<span class="name {name.lower()}">{esc(name)}</span>{suffix}'


@dataclass(eq=False)
class Line:
    """A feed item: `body_html` is already markup (escaped where a person typed it)."""

    sender: Person | None
    body_html: str | Callable[[Person], str]


@dataclass(eq=False)
class Person:
    clavis: str
    asker: bool = False
    feed: asyncio.Queue = field(default_factory=asyncio.Queue)
    room: Room | None = None
    index: int = 0
    lobbies: list[str] = field(default_factory=list)
    question: str | None = None
    silenced: bool = False
    abandoned: bool = False
    deleted: bool = False
    warned: bool = False
    hung: bool = False  # fault: write nothing more, keep the connection
    transport: asyncio.Transport | None = None
    clock: int = 0
    fillers: int = 0  # filler writes ("" and the <b> heartbeat) sent on this person's stream
    path: str = ""


@dataclass(eq=False)
class Room:
    kind: str  # two | three | question | global
    people: list[Person] = field(default_factory=list)
    question: str | None = None

    def appearance(self, person: Person, viewer: Person) -> str:
        if self.kind == "two" or (self.kind == "question" and not viewer.asker):
            return name_html("You") if person is viewer else name_html("Stranger")
        if self.kind == "three":
            return name_html(NAMES[person.index], you=person is viewer)
        if self.kind == "question":
            return name_html(NAMES[person.index])
        return '<span class="name" style="color:var(--color-alice);">Anonymous</span>'


class RemandzanaServer:
    """Lobbies two, three, question (ask/discuss), any and global; POST /send; faults on demand."""

    def __init__(self, *, poll: float = 0.5, event_driven: bool = False) -> None:
        self.poll = poll  # the real server sleeps 0.5 s whenever a feed is empty
        self.event_driven = event_driven  # bench only: wake on a line instead of polling
        self.secret = secrets.token_bytes(16)
        self.people: dict[str, Person] = {}
        self.joined: list[Person] = []  # every person in order of arrival (tests pick streams by index)
        self.waiting: dict[str, list[Person]] = {"two": [], "three": [], "question": []}
        self.global_room = Room("global")
        self.sends: list[tuple[int, dict[str, str]]] = []  # (status, form) of every POST /send
        self.get_status: int | None = None  # fault: answer chat GETs with this status
        self.send_status: int | None = None  # fault: answer /send with this status (nothing relayed)
        self.hang_sends = False  # fault: /send never answers
        self.split = 0  # fault: write each chunk in pieces of this many bytes
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.streams_open = 0
        self.stopping = asyncio.Event()  # releases hung handlers, so stopping never waits on them

    # ---- lifecycle ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        for lobby in ("two", "three", "any", "global"):
            app.router.add_get(f"/{lobby}", self.chat)
        app.router.add_get("/question/ask", self.chat)
        app.router.add_get("/question/discuss", self.chat)
        app.router.add_get("/question", self.question_redirect)
        app.router.add_post("/send", self.send)
        return app

    async def start(self, port: int = 0) -> str:
        self.runner = web.AppRunner(self.app())
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        self.stopping.set()
        if self.runner is not None:
            await self.runner.cleanup()

    async def wait_people(self, n: int, timeout: float = 10.0) -> list[Person]:
        """Wait until `n` people have arrived; returns them in order."""
        async with asyncio.timeout(timeout):
            while len(self.joined) < n:
                await asyncio.sleep(0.01)
        return self.joined[:n]

    # ---- forms -------------------------------------------------------------------------------

    def sign(self, clavis: str, timestamp: int, setup: bool) -> str:
        data = json.dumps([clavis, timestamp, setup]).encode()
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()

    def form_html(self, person: Person, setup: bool = False, value: str = "") -> str:
        ts = int(time.time())
        salt = secrets.token_hex(16)
        sig = self.sign(person.clavis, ts, setup)
        placeholder = "Ask a question..." if setup else ""
        return (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body><main>\n'
            '<form action="/send" id="form" method="post">\n'
            f'<input id="clavis" name="clavis" required type="hidden" value="{person.clavis}">\n'
            f'<input id="timestamp" name="timestamp" required type="hidden" value="{ts}">\n'
            f'<input id="setup" name="setup" required type="hidden" value="{"true" if setup else "false"}">\n'
            f'<input id="salt" name="salt" required type="hidden" value="{salt}">\n'
            f'<input id="signature" name="signature" required type="hidden" value="{sig}">\n'
            f'<input id="message" maxlength="500" name="message" placeholder="{placeholder}" required spellcheck="true" type="text" value="{esc(value)}">\n'
            '<button id="button">Send</button>\n</form>\n</main></body></html>'
        )

    def preamble(self, person: Person) -> str:
        srcdoc = esc(self.form_html(person, setup=person.asker))
        return (
            '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
            '<link href="/static/style.css" rel="stylesheet">\n</head>\n<body>\n'
            '<nav id="nav"><a class="nav-item" href="/">Home</a></nav>\n<main>\n'
            f'    <iframe id="send" scrolling="no" srcdoc="{srcdoc}" tabindex="1"></iframe>\n'
            '    <article id="lines">'
        )

    # ---- the stream --------------------------------------------------------------------------

    async def question_redirect(self, request: web.Request) -> web.StreamResponse:
        target = "/question/discuss" if secrets.randbelow(3) == 0 else "/question/ask"
        raise web.HTTPFound(target)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if self.get_status is not None:
            return web.Response(status=self.get_status, text="no")
        path = request.path
        person = Person(secrets.token_urlsafe(16), asker=path == "/question/ask", path=path)
        person.transport = request.transport
        self.people[person.clavis] = person
        self.joined.append(person)
        await self.join(person, path)
        resp = web.StreamResponse(headers={"Cache-Control": "no-store"})
        resp.content_type = "text/html"
        resp.charset = "utf-8"
        resp.enable_chunked_encoding()
        self.streams_open += 1
        try:
            await resp.prepare(request)
            await self.write(resp, self.preamble(person))
            while not person.deleted:
                chunk = await self.readline(person)
                if person.hung:
                    await self.stopping.wait()
                    break
                await self.write(resp, chunk)
                if person.abandoned and person.feed.empty():
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.streams_open -= 1
            await self.delete(person)
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp

    async def write(self, resp: web.StreamResponse, text: str) -> None:
        data = text.encode()
        if not self.split:
            await resp.write(data)
            return
        for at in range(0, len(data), self.split):
            await resp.write(data[at : at + self.split])
            await asyncio.sleep(0)

    async def readline(self, person: Person) -> str:
        # The real server's quirk: look at the feed, else sleep 0.5 s and send a filler.
        if self.event_driven:
            try:
                line = await asyncio.wait_for(person.feed.get(), self.poll)
            except TimeoutError:
                line = None
        else:
            try:
                line = person.feed.get_nowait()
            except asyncio.QueueEmpty:
                line = None
                await asyncio.sleep(self.poll)
        if line is not None:
            return self.format(person, line) if isinstance(line, Line) else line
        person.clock = (person.clock + 1) % 12
        person.fillers += 1
        return HEARTBEAT if person.clock == 1 else " "

    def format(self, viewer: Person, line: Line) -> str:
        body = line.body_html(viewer) if callable(line.body_html) else line.body_html
        if line.sender is None:
            return f'\n<div class="line"><div class="system">{body}</div></div>'
        assert line.sender.room is not None or line.sender is viewer
        room = line.sender.room or viewer.room
        sender = room.appearance(line.sender, viewer) if room else name_html("You")
        return f'\n<div class="line"><span class="sender">{sender}:</span> <bdi class="message">{body}</bdi></div>'

    def system(self, person: Person, text_html: str) -> None:
        person.feed.put_nowait(Line(None, text_html))

    def inject(self, person: Person, raw: str) -> None:
        """Fault/test hook: put raw markup on a person's stream as it is."""
        person.feed.put_nowait(raw)

    def say(self, person: Person, text: str) -> None:
        """Test hook: a line typed by `person` (as a browser would POST it), relayed to the room."""
        assert person.room is not None
        self.broadcast(person.room, Line(person, esc(text)))

    def reset(self, person: Person) -> None:
        """Fault: abort the person's TCP connection."""
        if person.transport is not None:
            person.transport.abort()

    # ---- lobbies and rooms -------------------------------------------------------------------

    async def join(self, person: Person, path: str) -> None:
        if path == "/global":
            self.admit(self.global_room, person)
            return
        if path == "/any":
            self.system(person, "Looking for people...")
            lobbies = ["two", "three", "question"]
            secrets.SystemRandom().shuffle(lobbies)
        else:
            lobby = {"/two": "two", "/three": "three"}.get(path, "question")
            lobbies = [lobby]
            self.system(person, {
                "two": "Looking for a random...",
                "three": "Looking for two randoms...",
            }.get(lobby) or ("Waiting for your question..." if person.asker else "Looking for a question for you to discuss..."))
        for lobby in lobbies:
            self.waiting[lobby].append(person)
            person.lobbies.append(lobby)
            self.try_room(lobby)
            if person.room is not None:
                break

    def try_room(self, lobby: str) -> None:
        waiting = self.waiting[lobby]
        if lobby == "question":
            askers = [p for p in waiting if p.asker and p.question is not None][:1]
            others = [p for p in waiting if not p.asker][:2]
            if len(askers) < 1 or len(others) < 2:
                return
            members = askers + others
        else:
            need = 2 if lobby == "two" else 3
            if len(waiting) < need:
                return
            members = waiting[:need]
        room = Room(lobby)
        for person in members:
            self.admit(room, person)

    def admit(self, room: Room, person: Person) -> None:
        for lobby in person.lobbies:
            with contextlib.suppress(ValueError):
                self.waiting[lobby].remove(person)
        person.lobbies.clear()
        person.index = sum(p.asker == person.asker for p in room.people)
        person.room = room
        room.people.append(person)
        if room.kind == "two":
            self.system(person, "Found someone. Say hi!")
        elif room.kind == "three":
            self.system(person, "Found two people. Say hi!")
        elif room.kind == "question":
            if person.asker:
                room.question = person.question
                self.system(person, "Found two people. Watch them discuss your question!")
            if len(room.people) == 3:
                q = f'Found a question. Question: <span class="question">{esc(room.question or "")}</span>'
                for p in room.people:
                    if not p.asker:
                        self.system(p, q)
        else:
            n = len(room.people)
            self.system(
                person,
                f"Welcome to the room. There are {n} people here (including you)."
                if n > 1
                else "Welcome to the room. You&#39;re the only one here right now.",
            )
            self.system(person, "Type /help to see a list of commands.")
            for p in room.people:
                if p is not person:
                    self.system(p, f"&gt; {room.appearance(person, p)} joined.")

    def broadcast(self, room: Room, line: Line, exclude: Person | None = None) -> None:
        for person in room.people:
            if person is not exclude:
                person.feed.put_nowait(line)

    async def delete(self, person: Person) -> None:
        if person.deleted:
            return
        person.deleted = True
        self.people.pop(person.clavis, None)
        for lobby in person.lobbies:
            with contextlib.suppress(ValueError):
                self.waiting[lobby].remove(person)
        room = person.room
        if room is None or person not in room.people:
            return
        room.people.remove(person)
        if room.kind == "two":
            body: str | Callable[[Person], str] = "The random left."
        elif room.kind == "three":
            body = f"{name_html(NAMES[person.index])} left."
        elif room.kind == "question":
            body = "The OP left." if person.asker else (lambda viewer: f"{room.appearance(person, viewer)} left.")
        else:
            body = lambda viewer: f"&lt; {room.appearance(person, viewer)} left."  # noqa: E731
        self.broadcast(room, Line(None, body))
        if room.kind != "global" and len(room.people) == 1:
            room.people[0].abandoned = True

    # ---- POST /send --------------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        status, page = await self._send(form)
        self.sends.append((status, form))
        if self.hang_sends:
            await self.stopping.wait()
        return web.Response(status=status, text=page, content_type="text/html")

    async def _send(self, form: dict[str, str]) -> tuple[int, str]:
        if self.send_status is not None:
            return self.send_status, "injected"
        person = self.people.get(form.get("clavis", ""))
        try:
            timestamp = int(form.get("timestamp", ""))
        except ValueError:
            return 403, "Forbidden"
        setup = form.get("setup", "").lower() == "true"
        good = person is not None and hmac.compare_digest(
            self.sign(person.clavis, timestamp, setup), form.get("signature", "")
        )
        if not good or int(time.time()) - timestamp >= 86400 or not form.get("salt"):
            return 403, "Forbidden"
        message = form.get("message", "")
        if not message or len(message) > 500:
            return 413, "Request Entity Too Large"
        assert person is not None
        if person.silenced:
            return 403, "Forbidden"
        if setup:
            if not person.asker or person.question is not None or "question" not in person.lobbies:
                return 403, "Forbidden"
            if "forbidden" in message:  # a stand-in for the real server's censorship policies
                self.system(person, "Question rejected (forbidden word).")
                return 200, self.form_html(person, setup=True, value=message)
            self.system(person, f'Your question is: <span class="question">{esc(message)}</span>')
            self.system(person, "Looking for people to discuss your question...")
            person.question = message
            person.silenced = True
            self.try_room("question")
            return 200, '<input id="message" placeholder="Your question was submitted." disabled>'
        room = person.room
        if room is None:
            if not person.warned:
                person.warned = True
                self.system(person, "You&#39;re not talking to anyone yet!")
            return 200, self.form_html(person, value=message)
        if room.kind == "global" and message.startswith("/"):
            person.feed.put_nowait(Line(person, esc(message)))
            key = message.split()[0].lower()
            answer = {"/help": "List of commands:\n /ping  ping\n /help  show this list of commands", "/ping": "Pong."}
            self.system(person, esc(answer.get(key, "Command was not recognized. Type /help to see a list of commands.")))
            return 200, self.form_html(person)
        # The sender's own line comes back on its own stream too: clients must drop the echo.
        self.broadcast(room, Line(person, esc(message)))
        return 200, self.form_html(person)


async def main(port: int = 0, event_driven: bool = False) -> None:  # pragma: no cover - manual/bench use
    server = RemandzanaServer(event_driven=event_driven)
    url = await server.start(port)
    print(url, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    import sys

    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0, "--event-driven" in sys.argv))
