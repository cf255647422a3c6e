"""What a queued stranger line carries besides its text (core ref, quote, picture), and a picture as an upload."""

from __future__ import annotations

import json
from dataclasses import dataclass

import aiohttp

from bridge.events import Image

__all__ = ["EXTENSIONS", "Line", "Upload"]

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


@dataclass(frozen=True, slots=True)
class Upload:
    """A re-encoded picture posted as a file attachment (never a link to where it came from)."""

    data: bytes
    mime: str

    @classmethod
    def of(cls, image: Image) -> Upload:
        return cls(image.data, image.mime)

    @property
    def filename(self) -> str:
        return f"picture.{EXTENSIONS.get(self.mime, 'bin')}"

    def form(self, payload: dict) -> aiohttp.FormData:
        """The multipart body Discord takes for a message with one file: payload_json and files[0]."""
        form = aiohttp.FormData()
        body = {**payload, "attachments": [{"id": 0, "filename": self.filename}]}
        form.add_field("payload_json", json.dumps(body), content_type="application/json")
        form.add_field("files[0]", self.data, filename=self.filename, content_type=self.mime)
        return form


@dataclass(frozen=True, slots=True)
class Line:
    """One stranger message queued as text: its core ref (answered with Posted), the quote of the
    message it replies to, and its picture."""

    ref: str | None
    text: str = ""
    quote: str | None = None
    picture: Upload | None = None
