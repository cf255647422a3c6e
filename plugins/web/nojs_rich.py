"""The no-JavaScript chat's rich lines, pure: messages that edits, deletions and reactions change, as escaped HTML."""

from __future__ import annotations

from html import escape

__all__ = ["QUOTE", "REDRAW", "RichLine", "find", "last_own", "last_stranger", "shown"]

QUOTE = 80  # characters of a quoted line
# Written at the end of a stream whose shown lines changed (an edit, a deletion, a reaction):
# the stream then closes, the browser loads the chat again (no script needed) and the page shows
# every line as it is now; a deleted text is gone from the screen, not only marked.
REDRAW = '<meta http-equiv="refresh" content="0">\n'


class RichLine:
    """One message of the no-JS transcript, with its line id: rendered anew whenever it is shown."""

    __slots__ = ("ref", "own", "who", "text", "quote", "answers", "edited", "deleted", "reactions", "picture", "at")

    def __init__(
        self, ref: str, own: bool, who: str, text: str, quote: str | None = None, answers: RichLine | None = None
    ) -> None:
        self.ref = ref
        self.own = own
        self.who = who
        self.text = text
        self.quote = quote  # the core's excerpt of the line answered, when that line is not here
        self.answers = answers  # the line answered, when it is: quoted as it is now
        self.edited = False
        self.deleted = False
        self.reactions: dict[str, set[str]] = {}  # emoji -> who has it ("You", "Stranger")
        self.picture: dict | None = None  # {url, width, height} of a picture served by the platform
        self.at = -1  # Redis mode: its line number in the chat's transcript there, once it is in it

    def edit(self, text: str) -> None:
        if not self.deleted:
            self.text, self.edited = text, True

    def retract(self) -> None:
        self.text, self.deleted, self.quote, self.picture = "", True, None, None
        self.reactions.clear()

    def react(self, emoji: str, add: bool, who: str) -> None:
        if self.deleted:
            return
        people = self.reactions.setdefault(emoji, set())
        if add:
            people.add(who)
        else:
            people.discard(who)
            if not people:
                del self.reactions[emoji]

    def quoted(self) -> str | None:
        target = self.answers
        if target is None:
            return self.quote
        return "message deleted" if target.deleted else f"{target.who}: {clip(target.text)}"

    def html(self) -> str:
        kind = "you" if self.own else "stranger"
        parts = [f'<p class="line {kind}{" deleted" if self.deleted else ""}" id="{self.ref}">',
                 f'<b class="who">{escape(self.who)}:</b> ']
        quote = self.quoted()
        if quote is not None and not self.deleted:
            parts.append(f'<span class="quote">&gt; {escape(quote)}</span>')
        if self.deleted:
            parts.append('<i class="text">message deleted</i>')
        else:
            parts.append(f'<bdi class="text">{escape(self.text)}</bdi>')
            if self.edited:
                parts.append(' <small class="edited">(edited)</small>')
            if self.picture is not None:  # a link, not an <img>: nothing is shown until the user asks
                url = escape(self.picture["url"])
                parts.append(f' <a class="picture" href="{url}" target="_blank" rel="noreferrer noopener">'
                             "Show the picture</a>")
        if self.reactions:
            counts = " · ".join(f"{escape(emoji)} {len(who)}" for emoji, who in self.reactions.items())
            parts.append(f'<span class="reactions">{counts}</span>')
        parts.append("</p>\n")
        return "".join(parts)


def shown(item: str | RichLine) -> str:
    """A transcript item as HTML: plain lines are HTML already."""
    return item if isinstance(item, str) else item.html()


def clip(text: str) -> str:
    return text if len(text) <= QUOTE else text[: QUOTE - 1] + "…"


def find(items: list, ref: str) -> RichLine | None:
    """The rich line `ref` among transcript or queue items (newest first)."""
    for item in reversed(items):
        line = item if isinstance(item, RichLine) else item[1] if isinstance(item, list) and len(item) > 1 else None
        if isinstance(line, RichLine) and line.ref == ref:
            return line
    return None


def _last(items: list, own: bool) -> RichLine | None:
    for item in reversed(items):
        line = item[1] if isinstance(item, list) and len(item) > 1 else item
        if isinstance(line, RichLine) and line.own == own and not line.deleted:
            return line
    return None


def last_own(items: list) -> RichLine | None:
    """The user's newest message that is not deleted."""
    return _last(items, True)


def last_stranger(items: list) -> RichLine | None:
    """The stranger's newest message that is not deleted."""
    return _last(items, False)
