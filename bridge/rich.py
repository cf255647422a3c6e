"""Rich relay inside a session: message references, edits, deletions, reactions, replies, pictures, and their limits."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from typing import TYPE_CHECKING

from . import fallback
from .bucket import TokenBucket
from .events import Edit, Image, Message, Posted, Reaction, Retract
from .hygiene import clean, cut
from .refs import KEPT, RefMap

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "ChatRich", "emoji_text", "encoded", "from_stranger", "from_user", "incoming", "outgoing", "outgoing_text", "restore",
    "save", "save_due",
]  # fmt: skip

log = logging.getLogger(__name__)

EMOJI = 32  # characters of a reaction kept (a few emoji with modifiers; never a sentence)
_CUSTOM = re.compile(r"<a?:(\w{1,32}):\d+>")
SAVE_INTERVAL = 1.0  # a resumable chat's map is saved at most once per this many seconds, at its next change


class ChatRich:
    """What one chat of one session holds for the rich relay: the map, the flood limits, notices given."""

    __slots__ = ("refs", "user_reactions", "stranger_reactions", "stranger_edits", "user_images", "told", "saved_at")

    def __init__(self, session: Session, refs: RefMap | None = None) -> None:
        s = session.settings
        self.refs = refs or RefMap(s.refs_per_side)
        self.user_reactions = TokenBucket(s.reaction_rate, s.reaction_burst)
        self.stranger_reactions = TokenBucket(s.reaction_rate, s.reaction_burst)
        self.stranger_edits = TokenBucket(s.stranger_rate, s.stranger_burst)
        self.user_images = TokenBucket(s.images.rate, s.images.burst)
        self.told: set[str] = set()  # notices given once per chat
        self.saved_at = 0.0


def emoji_text(emoji: str) -> str:
    """A reaction as it may cross: cleaned and short; a Discord custom emoji is only its :name:
    (its id would lead back to a guild), and a link is no reaction ("" : not relayed)."""
    text = _CUSTOM.sub(r":\1:", clean(emoji).strip())
    return "" if "://" in text or "mxc:" in text.lower() else cut(text, EMOJI)


def _state(session: Session) -> ChatRich:
    state = session.rich
    if state is None:
        state = session.rich = ChatRich(session)
    return state


def _is_rich(session: Session) -> bool:
    return session.chat is not None and type(session.chat).rich


async def _once(session: Session, state: ChatRich, key: str, text: str) -> None:
    if key not in state.told:
        state.told.add(key)
        await session.notice(text)


def restore(session: Session, data: str | None) -> None:
    """Take up the map persisted with a resumed session (a damaged one is dropped: replies and edits
    of earlier messages are then ignored, as after any new chat)."""
    session.rich = None
    if data:
        try:
            session.rich = ChatRich(session, RefMap.decode(data, session.settings.refs_per_side))
        except ValueError as exc:
            log.warning("session %s: the persisted reference map was unreadable: %s", session.room, exc)


def encoded(session: Session) -> str | None:
    """The map to persist with the session record, or None (nothing yet, or the chat cannot resume)."""
    state = session.rich
    if state is None or session.chat is None or session.chat.handle is None:
        return None
    return state.refs.encode()


async def _maybe_save(session: Session, state: ChatRich) -> None:
    # Only a chat its backend can resume needs its map after a restart. Asked last: a chat's
    # handle may be built on every call (the hub's is JSON), and this runs on every message.
    if session.chat is None or not state.refs.dirty:
        return
    now = time.monotonic()
    if now - state.saved_at >= SAVE_INTERVAL and session.chat.handle is not None:
        state.saved_at = now
        await session.host.save(session._record())


# ---- messages ------------------------------------------------------------------------------


def outgoing_text(session: Session, event: Message, text: str) -> Message:
    """The user's checked message with no picture as the chat gets it: a core reference, the reply
    translated (or quoted, for a text-only chat). Not a coroutine: it runs on every message, and
    `save_due` / `save` persist the map afterwards."""
    state = session.rich or _state(session)
    refs = state.refs
    reply = quote = None
    if event.reply_to is not None:
        found = refs.by_platform(event.reply_to)
        if found is not None and not found[1].gone:
            reply, quote = found[0], found[1].quote()
    ref = refs.add_mine(event.ref, text)
    chat = session.chat
    if chat is not None and type(chat).rich:
        return Message(text, None, ref, reply)
    return Message(fallback.quoted(text, quote, session.host.max_message_length(session.backend_name)))


async def outgoing(session: Session, event: Message, text: str) -> Message | None:
    """`outgoing_text` for a message that may carry a picture: attached, or refused with a notice.
    None: nothing to send."""
    if event.image is None:
        return outgoing_text(session, event, text)
    state = session.rich or _state(session)
    chat = session.chat
    image = await _user_image(session, state, chat is not None and type(chat).rich, event.image)
    if not text and image is None:
        return None
    out = outgoing_text(session, event, text)
    return Message(out.text, None, out.ref, out.reply_to, None, image) if image is not None else out


def save_due(session: Session) -> bool:
    """Whether the map may need saving now (the cheap test, on every message; `save` does the rest)."""
    state = session.rich
    return state is not None and state.refs.dirty and time.monotonic() - state.saved_at >= SAVE_INTERVAL


async def save(session: Session) -> None:
    """Persist the map with the session record, when the chat can resume and the interval has passed."""
    if session.rich is not None:
        await _maybe_save(session, session.rich)


async def _user_image(session: Session, state: ChatRich, rich: bool, image: Image) -> Image | None:
    if not rich:
        await session.notice(fallback.RULES[Image].notice or "")
        return None
    if not state.user_images.allow():
        await session.notice("You're sending pictures too fast: this one was not sent.")
        return None
    refusal = session.host.moderator.image_refusal(session.start.user if session.start else None)
    if refusal:
        await session.notice(refusal)
        return None
    return image


def incoming(session: Session, event: Message, text: str) -> Message:
    """A stranger's checked message as the room gets it: its core reference (handed out here when
    the backend has none), and the reply as the room's own id with a short quote."""
    refs = (session.rich or _state(session)).refs
    reply_id = quote = None
    if event.reply_to is not None:
        entry = refs.by_core(event.reply_to)
        if entry is not None and not entry.gone:
            reply_id, quote = entry.id, entry.quote()
    ref = refs.add_theirs(event.ref, text)
    if ref is event.ref and text is event.text and event.reply_to is None and event.quote is None:
        return event  # already what the room gets (most messages through the hub): no new Message
    return Message(text, event.stranger, ref, reply_id, quote, event.image)


# ---- the user's edits, deletions, reactions, and where the room showed stranger lines -------


async def from_user(session: Session, event: Edit | Retract | Reaction | Posted) -> None:
    """Handle a user-side rich event. Anything the map does not know (an earlier chat, too old) is
    ignored with no error, and so is everything once the chat has ended."""
    if session.state.value != "chatting" or session.chat is None:
        return
    state = _state(session)
    match event:
        case Posted(ref=ref, id=platform_id):
            entry = state.refs.posted(ref, platform_id)
            if entry is None:
                return
            if entry.pending:
                held, entry.pending = entry.pending, None
                for pending in held:
                    await session.deliver(dataclasses.replace(pending, ref=platform_id))
            await _maybe_save(session, state)
        case Edit(ref=platform_id, text=text):
            await _user_edit(session, state, platform_id, text)
        case Retract(ref=platform_id):
            found = state.refs.by_platform(platform_id)
            if found is None or not found[2] or found[1].gone or not session._can_write():
                return
            ref, entry, _ = found
            entry.gone, entry.snippet = True, None
            state.refs.dirty = True
            if _is_rich(session):
                await session._send(Retract(ref))
            else:
                await _once(session, state, "retract", fallback.RULES[Retract].notice or "")
            await _maybe_save(session, state)
        case Reaction(ref=platform_id, emoji=emoji, add=add):
            found = state.refs.by_platform(platform_id)
            if found is None or found[1].gone or not session._can_write() or not _is_rich(session):
                return  # a text-only chat gets nothing of a reaction (the fallback table)
            emoji = emoji_text(emoji)
            ref, entry, _ = found
            if not emoji or entry.reactions >= session.settings.max_reactions:
                return
            if not state.user_reactions.allow():
                await _once(session, state, "reactions", "You're reacting too fast: some reactions were not sent.")
                return
            entry.reactions += 1
            await session._send(Reaction(ref, emoji, add))


async def _user_edit(session: Session, state: ChatRich, platform_id: str, text: str) -> None:
    found = state.refs.by_platform(platform_id)
    if found is None or not found[2] or found[1].gone or not session._can_write():
        return  # only the user's own messages of this chat can be edited
    ref, entry, _ = found
    text = clean(text).strip()
    if not text:
        return
    if entry.edits >= session.settings.max_edits:
        most = session.settings.max_edits
        await _once(session, state, "edits", f"Your edit was not sent: a message can be corrected {most} times at most.")
        return
    limit = session.host.max_message_length(session.backend_name)
    if len(text) > limit:
        await session.notice(f"Your edit is too long ({len(text)} characters; the limit is {limit}). It was not sent.")
        return
    if not session.user_bucket.allow():
        await _once(session, state, "fast", "You're sending messages too fast: an edit was not sent.")
        return
    decision = session.host.moderator.from_user(session.room, text)  # an edit is checked like a message
    if not decision.relay:
        await session._refused(decision)
        return
    entry.edits += 1
    entry.snippet = decision.text[:KEPT]
    state.refs.dirty = True
    if _is_rich(session):
        await session._send(Edit(ref, decision.text))
    else:
        line = fallback.plain(Edit(ref, decision.text), limit=limit)
        if line is not None:
            await session._send(Message(line))
    await _maybe_save(session, state)


# ---- the stranger's edits, deletions and reactions ----------------------------------------


async def from_stranger(session: Session, event: Edit | Retract | Reaction) -> None:
    """Deliver a stranger's rich event with the room's own message id; held until `Posted` when
    the line is not shown yet (a deletion then replaces whatever was held: it wins)."""
    state = _state(session)
    refs = state.refs
    match event:
        case Edit(ref=ref, text=text, stranger=label):
            entry = refs.theirs.get(ref)
            if entry is None or entry.gone or entry.edits >= session.settings.max_edits:
                return
            if not state.stranger_edits.allow():
                await _once(session, state, "stranger-fast", "The stranger is editing too fast: some edits were not shown.")
                return
            text = clean(text, 65536).strip()
            if not text:
                return
            decision = session.host.moderator.from_stranger(session.room, text, label)
            if not decision.relay:
                await session._refused(decision)
                return
            entry.edits += 1
            entry.snippet = decision.text[:KEPT]
            refs.dirty = True
            out: Edit | Retract | Reaction = Edit(ref, decision.text, label)
        case Retract(ref=ref, stranger=label):
            entry = refs.theirs.get(ref)
            if entry is None or entry.gone:
                return
            entry.gone, entry.snippet = True, None
            refs.dirty = True
            out = Retract(ref, label)
            if entry.id is None:
                entry.pending = [out]  # deletion wins over what was held for the line
                return
        case Reaction(ref=ref, emoji=emoji, add=add, stranger=label):
            entry = refs.by_core(ref)
            emoji = emoji_text(emoji)
            if entry is None or entry.gone or not emoji or entry.reactions >= session.settings.max_reactions:
                return
            if ref in refs.mine and entry.id is None:
                return  # the user's platform gave no id for that message: nothing to react to
            if not state.stranger_reactions.allow():
                return  # a flood of reactions: dropped quietly (they are not messages)
            entry.reactions += 1
            out = Reaction(ref, emoji, add, label)
    if entry.id is None:
        entry.hold(out)
        return
    await session.deliver(dataclasses.replace(out, ref=entry.id))
    await _maybe_save(session, state)
