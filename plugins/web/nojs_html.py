"""The no-JavaScript chat, pure: form fields → start parameters, events → escaped HTML lines, the page and its send form."""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape

from bridge.events import Connected, Disconnected, Event, Message, Question, ServerNotice, Waiting
from bridge.wording import describe

from .rich import EMOJI

__all__ = [
    "MAX_MESSAGE",
    "PAD",
    "Settings",
    "end_of_page",
    "ends_stream",
    "error_page",
    "filler",
    "lines",
    "notice_line",
    "own_line",
    "page_head",
    "send_form",
    "settings",
    "start_params",
]

MAX_MESSAGE = 4000  # characters the send form's input accepts (the core refuses longer ones anyway)
# Browsers start rendering a streamed document only after a first chunk of some size; a comment
# that long makes the first lines show at once.
PAD = "<!--" + " " * 1024 + "-->\n"
SETTING_FIELDS = ("interests", "ask", "wantsspy")

Settings = dict[str, str]  # the start form's fields, carried in hidden fields for Next / New chat


def settings(form: Mapping[str, str]) -> Settings:
    """The start settings of a form (interests, ask, wantsspy), empty ones left out."""
    out = {k: form[k].strip() for k in SETTING_FIELDS if form.get(k, "").strip()}
    if "wantsspy" in out:
        out["wantsspy"] = "1"
    return out


def start_params(form: Mapping[str, str]) -> dict[str, str]:
    """/start parameters (see protocol.parse_start) from the no-JS start form: comma-separated
    `interests`, an optional question `ask`, the `wantsspy` checkbox."""
    chosen = settings(form)
    params: dict[str, str] = {"lang": form.get("lang") or "en"}
    if "ask" in chosen:
        params["ask"] = chosen["ask"]
    if "wantsspy" in chosen:
        params["wantsspy"] = "1"
    if "interests" in chosen and "ask" not in chosen and "wantsspy" not in chosen:
        params["topics"] = json.dumps([t for t in chosen["interests"].split(",") if t.strip()])
    return params


def notice_line(text: str) -> str:
    return f'<p class="line notice">{escape(text)}</p>\n'


def own_line(text: str) -> str:
    """The user's own message, echoed on their stream."""
    return f'<p class="line you"><b class="who">You:</b> <bdi class="text">{escape(text)}</bdi></p>\n'


def lines(event: Event, *, spy: bool = False) -> list[str]:
    """The HTML lines showing `event` on a no-JS stream; every piece of text is escaped.
    Typing indicators are not shown (nothing could take them away again)."""
    match event:
        case Message(text=text, stranger=label):
            who = escape(f"{label}:" if label else "Stranger:")
            return [f'<p class="line stranger"><b class="who">{who}</b> <bdi class="text">{escape(text)}</bdi></p>\n']
        case Waiting() | Connected() | Question() | ServerNotice() | Disconnected():
            text = describe(event)
            return [notice_line(text)] if text else []
        case _:
            return []


def ends_stream(event: Event) -> bool:
    """Whether `event` ends the no-JS chat (the stream closes after showing it)."""
    return isinstance(event, Disconnected) and event.final


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


def send_form(secret: str | None, chosen: Settings, *, spy: bool = False, ended: bool = False) -> str:
    """The small document in the page's iframe: message input with Send, Next, Stop and Report.

    The client id travels only in a hidden field of POST forms (never in a URL, so never in logs
    or a Referer). Next and New chat post to /nojs/start in the top window, which opens a new
    stream (the old one is ended by the server and closed by the navigation)."""
    keep = "".join(_hidden(k, v) for k, v in chosen.items())
    ident = _hidden("id", secret) if secret else ""
    if ended or not secret:
        body = (
            '<form class="nojs-send" method="post" action="/nojs/start" target="_top">'
            f'{keep}<span class="nojs-ended">This chat has ended.</span> '
            '<button type="submit" autofocus>New chat</button></form>'
        )
    else:
        message = (
            ""
            if spy
            else '<label for="msg" class="hidden-label">Message</label>'
            f'<input id="msg" name="msg" maxlength="{MAX_MESSAGE}" autocomplete="off" autofocus'
            ' placeholder="Type a message">'
            '<button type="submit" name="action" value="send">Send</button>'
            '<button type="submit" name="action" value="edit" class="next" title="Replace your last message with'
            ' the text above">Edit last</button>'
            '<button type="submit" name="action" value="delete" class="next">Delete last</button>'
        )
        reactions = (
            ""
            if spy
            else '<span class="nojs-react">React to their last message: '
            + "".join(f'<button type="submit" name="action" value="react:{e}" class="next">{e}</button>' for e in EMOJI)
            + "</span>"
        )
        body = (
            f'<form class="nojs-send" method="post" action="/nojs/send">{ident}{keep}{message}'
            '<button type="submit" name="action" value="next" class="next" formaction="/nojs/start" formtarget="_top">'
            "Next</button>"
            '<button type="submit" name="action" value="stop" class="danger">Stop</button>'
            '<button type="submit" name="action" value="report" class="report">Report</button>'
            f"{reactions}</form>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="/static/style.css"><title>Send</title></head>'
        f'<body class="nojs-frame">{body}</body></html>'
    )


def page_head(secret: str, chosen: Settings, *, spy: bool = False) -> str:
    """The start of the streamed chat page; it ends inside the unclosed log element, where every
    later line is appended."""
    frame = escape(send_form(secret, chosen, spy=spy), quote=True)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        "<title>stranger-bridge: chat (no JavaScript)</title>"
        '<link rel="stylesheet" href="/static/style.css"></head>'
        '<body class="nojs">'
        '<header class="top"><h1><a href="/">stranger-bridge</a></h1></header>'
        f'<iframe class="nojs-frame" title="Send a message" srcdoc="{frame}"></iframe>'
        '<div class="nojs-scroll"><div class="log nojs-log" role="log" aria-live="polite">\n'
        + PAD
    )


def end_of_page(chosen: Settings) -> str:
    """Closes the log and offers a new chat with the same settings."""
    keep = "".join(_hidden(k, v) for k, v in chosen.items())
    return (
        '<form class="nojs-again" method="post" action="/nojs/start">'
        f'{keep}<button type="submit">New chat</button> <a href="/">Change settings</a></form>'
        "</div></div></body></html>\n"
    )


def filler(n: int) -> str:
    """Keep-alive padding between events (proxies cut silent responses); invisible."""
    return "<!-- -->\n" if n % 4 == 0 else " "


def error_page(text: str) -> str:
    """A short HTML answer for a refused no-JS request, with the way back."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="/static/style.css"><title>stranger-bridge</title></head>'
        f'<body class="nojs-frame"><p class="line notice">{escape(text)}</p>'
        '<p><a href="/" target="_top">Back to the start page</a></p></body></html>'
    )

