"""Rich relay inside a session: message references, edits, deletions, reactions, replies, pictures, and their limits."""

from __future__ import annotations

import asyncio
import contextvars
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
from .sessionbase import State

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "ChatRich", "changed", "emoji_text", "encoded", "from_stranger", "from_user", "incoming", "outgoing", "outgoing_text",
    "posted_at_once", "restore", "save",
]  # fmt: skip

log = logging.getLogger(__name__)

EMOJI = 32  # characters of a reaction kept (a few emoji with modifiers; never a sentence)
_CUSTOM = re.compile(r"<a?:(\w{1,32}):\d+>")
SAVE_INTERVAL = 5.0  # a resumable chat's map is saved at most once per this many seconds, and at most this long after a change


class ChatRich:
    """What one chat of one session holds for the rich relay: the map, the flood limits, notices given.

    Made at the chat's first message, so it holds only what every chat needs: the flood limits of
    edits, reactions and pictures and the set of notices given are made when first used (a bucket
    made then is full, as one made at the start and unused since would be)."""

    __slots__ = (
        "refs", "user_reactions", "stranger_reactions", "stranger_edits", "user_images", "told", "saved_at", "save_queued",
        "persist",
    )  # fmt: skip

    def __init__(self, session: Session, refs: RefMap | None = None) -> None:
        self.refs = refs or RefMap(session.settings.refs_per_side)
        self.user_reactions: TokenBucket | None = None
        self.stranger_reactions: TokenBucket | None = None
        self.stranger_edits: TokenBucket | None = None
        self.user_images: TokenBucket | None = None
        self.told: set[str] | None = None  # notices given once per chat
        self.saved_at = time.monotonic()  # when the map was last saved, or made: its first save is due SAVE_INTERVAL after
        self.save_queued = False  # its save waits for its turn (`changed`)
        self.persist = True  # False once the host found that the chat cannot be resumed: never saved then


def _allow(session: Session, state: ChatRich, which: str) -> bool:
    """Take a token from the chat's flood limit `which` (one of ChatRich's bucket slots), made full when first asked."""
    bucket = getattr(state, which)
    if bucket is None:
        s = session.settings
        rate, burst = {
            "user_reactions": (s.reaction_rate, s.reaction_burst),
            "stranger_reactions": (s.reaction_rate, s.reaction_burst),
            "stranger_edits": (s.stranger_rate, s.stranger_burst),
            "user_images": (s.images.rate, s.images.burst),
        }[which]
        bucket = TokenBucket(rate, burst)
        setattr(state, which, bucket)
    return bucket.allow()


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
    if state.told is None:
        state.told = set()
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


def encoded(session: Session, handle: str | None) -> str | None:
    """The map to persist with the session record whose chat handle is `handle`, or None (nothing
    yet, or the chat cannot resume: no handle)."""
    state = session.rich
    if state is None or handle is None:
        return None
    return state.refs.encode()


def changed(session: Session) -> None:
    """The chat's map changed: queue its save with the host when it is due (SAVE_INTERVAL after the
    last save, or after the map was made), else when it will be (a timer: a change is saved even
    when no other follows it). The host gives one session per loop iteration its turn
    (`Session.put_save`), after the work ready then: the save (the record and two JSON forms,
    several times the cost of relaying a message) never delays the message that changed the map,
    and the first messages of many chats that began together are not kept waiting by all their
    saves at once. `save` then runs in the session's task, in order with its other store writes.
    Cheap: it runs after every message of the user's, and finds the save queued most times."""
    state = session.rich
    if state is not None and state.persist and not state.save_queued and state.refs.dirty:
        state.save_queued = True
        wait = state.saved_at + SAVE_INTERVAL - time.monotonic()
        if wait <= 0:
            session.host.queue_save(session, state)
        else:
            asyncio.get_running_loop().call_later(wait, _queue_save, session, state, context=_TIMERS)


# The context every save timer runs in: one, empty (nothing here reads a context variable).
# call_later would copy the caller's context for each timer, and a timer waits in every chat
# whose map changed within SAVE_INTERVAL of its last save: with a function rather than the
# host's bound method, 330 -> 145 bytes per chat with a timer (bench_omegle's 1,000 chats).
_TIMERS = contextvars.Context()


def _queue_save(session: Session, state: ChatRich) -> None:
    session.host.queue_save(session, state)


async def save(session: Session, state: ChatRich) -> None:
    """The queued save of `state` (from the session's inbox): persist the map with the session
    record if it is still this chat's, changed, and the chat can resume."""
    if state is not session.rich:
        return  # the chat ended, or another began, while it waited for its turn
    state.save_queued = False
    state.saved_at = time.monotonic()
    chat = session.chat
    if chat is None or not state.refs.dirty:
        return
    # Only a chat its backend can resume needs its map after a restart. Asked here, once per
    # save: a chat's handle may be built on every call (the hub's is JSON).
    handle = chat.handle
    if handle is not None:
        await session.host.save(session._record(handle))


# ---- messages ------------------------------------------------------------------------------


def outgoing_text(session: Session, event: Message, text: str) -> Message:
    """The user's checked message with no picture as the chat gets it: a core reference, the reply
    translated (or quoted, for a text-only chat). Not a coroutine: it runs on every message, and
    `changed` queues the map's save afterwards."""
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


async def _user_image(session: Session, state: ChatRich, rich: bool, image: Image) -> Image | None:
    if not rich:
        await session.notice(fallback.RULES[Image].notice or "")
        return None
    if not _allow(session, state, "user_images"):
        await session.notice("You're sending pictures too fast: this one was not sent.")
        return None
    refusal = await session.host.moderator.image_refusal(session.start.user if session.start else None)
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


def posted_at_once(session: Session, event: Posted) -> bool:
    """Record where the room showed a stranger line as it is submitted, outside the session's task,
    when that is all there is to do: True when done. False when the task must take it in its turn:
    the chat is not (or no longer) chatting, or events of the stranger's wait for that line (they
    are delivered from the task). Every line a platform shows answers with a Posted: handled here,
    it costs no inbox slot and no turn of the session's task."""
    state = session.rich
    if state is None or session.state is not State.CHATTING or session.chat is None:
        return False
    refs = state.refs
    entry = refs.entry(event.ref, False)
    if entry is None or entry.pending:
        return False
    if refs.posted(event.ref, event.id) is not None:
        changed(session)
    return True


async def from_user(session: Session, event: Edit | Retract | Reaction | Posted) -> None:
    """Handle a user-side rich event. Anything the map does not know (an earlier chat, too old) is
    ignored with no error, and so is everything once the chat has ended."""
    if session.state is not State.CHATTING or session.chat is None:
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
            changed(session)
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
            changed(session)
        case Reaction(ref=platform_id, emoji=emoji, add=add):
            found = state.refs.by_platform(platform_id)
            if found is None or found[1].gone or not session._can_write() or not _is_rich(session):
                return  # a text-only chat gets nothing of a reaction (the fallback table)
            emoji = emoji_text(emoji)
            ref, entry, _ = found
            if not emoji or entry.reactions >= session.settings.max_reactions:
                return
            if not _allow(session, state, "user_reactions"):
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
    changed(session)


# ---- the stranger's edits, deletions and reactions ----------------------------------------


async def from_stranger(session: Session, event: Edit | Retract | Reaction) -> None:
    """Deliver a stranger's rich event with the room's own message id; held until `Posted` when
    the line is not shown yet (a deletion then replaces whatever was held: it wins)."""
    state = _state(session)
    refs = state.refs
    match event:
        case Edit(ref=ref, text=text, stranger=label):
            entry = refs.entry(ref, False)
            if entry is None or entry.gone or entry.edits >= session.settings.max_edits:
                return
            if not _allow(session, state, "stranger_edits"):
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
            entry = refs.entry(ref, False)
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
            if not _allow(session, state, "stranger_reactions"):
                return  # a flood of reactions: dropped quietly (they are not messages)
            entry.reactions += 1
            out = Reaction(ref, emoji, add, label)
    if entry.id is None:
        entry.hold(out)
        return
    await session.deliver(dataclasses.replace(out, ref=entry.id))
    changed(session)
