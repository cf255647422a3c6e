"""The rich side of the Discord-compatible test server: message edits and deletions, reactions, file uploads and a CDN."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .fakebase import BOT_ID, FILES, json_answer, now_iso, snowflake

__all__ = ["RichMessages"]


class RichMessages:
    """Mixed into FakeDiscord: what discord.py calls to edit, delete and react, and what users do."""

    channels: dict[int, dict]
    messages: dict[int, list[dict]]
    cdn: dict[str, tuple[bytes, str]]
    cdn_fetches: list[str]
    reactors: dict[int, dict[str, list[int]]]
    deleted: list[dict]
    webhooks: dict[int, dict]
    cdn_base: str
    # and from FakeDiscord: _notify(), dispatch(event, data), member(uid)

    async def _cdn_get(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        self.cdn_fetches.append(tail)
        await self._notify()
        found = self.cdn.get(tail)
        if found is None:
            return web.Response(status=404)
        data, ctype = found
        return web.Response(body=data, headers={"Content-Type": ctype})

    def attachments(self, cid: int, files: list[tuple[str, str, bytes]], *, size: int | None = None) -> list[dict]:
        """Store files on the CDN; the attachment objects Discord would put in a message.
        `files`: (filename, content type, bytes); `size` overrides the size the object claims."""
        out = []
        for filename, ctype, data in files:
            aid = snowflake()
            path = f"attachments/{cid}/{aid}/{filename}"
            self.cdn[path] = (data, ctype)
            out.append({"id": str(aid), "filename": filename, "size": len(data) if size is None else size,
                        "url": f"{self.cdn_base}/{path}", "proxy_url": f"{self.cdn_base}/{path}",
                        "content_type": ctype})
        return out

    def find_message(self, cid: int, mid: int) -> dict | None:
        return next((m for m in self.messages.get(cid, []) if int(m["id"]) == mid), None)

    def _uploaded(self, cid: int, files: list[tuple[str, str, str, bytes]]) -> list[dict]:
        return self.attachments(cid, [(fname, ctype, data) for _, fname, ctype, data in files])

    async def _edit_message(self, cid: int, msg: dict, body: dict, files: list) -> web.Response:
        for key in ("content", "embeds", "components", "flags"):
            if key in body:
                msg[key] = body[key]
        if "attachments" in body or files:  # kept: those listed by id; new: the uploaded files
            keep = {str(a.get("id")) for a in body.get("attachments", [])}
            msg["attachments"] = [a for a in msg["attachments"] if a["id"] in keep] + self._uploaded(cid, files)
        msg["edited_timestamp"] = now_iso()
        await self.dispatch("MESSAGE_UPDATE", dict(msg))
        return json_answer(msg)

    async def _delete(self, cid: int, msg: dict) -> web.Response:
        self.messages[cid].remove(msg)
        self.deleted.append(msg)
        self.reactors.pop(int(msg["id"]), None)
        data = {"id": msg["id"], "channel_id": str(cid)}
        if "guild_id" in msg:
            data["guild_id"] = msg["guild_id"]
        await self.dispatch("MESSAGE_DELETE", data)
        return web.Response(status=204)

    def _unknown_message(self) -> web.Response:
        return json_answer({"message": "Unknown Message", "code": 10008}, 404)

    async def _patch_message(self, request, body, cid, mid):
        msg = self.find_message(int(cid), int(mid))
        if msg is None:
            return self._unknown_message()
        if msg["author"]["id"] != str(BOT_ID):
            return json_answer({"message": "Cannot edit a message authored by another user", "code": 50005}, 403)
        return await self._edit_message(int(cid), msg, body, request[FILES])

    async def _delete_message(self, request, body, cid, mid):
        msg = self.find_message(int(cid), int(mid))
        if msg is None:
            return self._unknown_message()
        if msg["author"]["id"] != str(BOT_ID):
            return json_answer({"message": "Missing Permissions", "code": 50013}, 403)  # no Manage Messages here
        return await self._delete(int(cid), msg)

    def _webhook_message(self, request, wid, token, mid) -> tuple[int, dict] | web.Response:
        hook = self.webhooks.get(int(wid))
        if hook is None or hook["token"] != token:
            return json_answer({"message": "Unknown Webhook", "code": 10015}, 404)
        cid = int(request.query.get("thread_id") or hook["channel_id"])
        msg = self.find_message(cid, int(mid))
        if msg is None or msg.get("webhook_id") != str(wid):
            return self._unknown_message()
        return cid, msg

    async def _patch_webhook_message(self, request, body, wid, token, mid):
        found = self._webhook_message(request, wid, token, mid)
        if isinstance(found, web.Response):
            return found
        return await self._edit_message(found[0], found[1], body, request[FILES])

    async def _delete_webhook_message(self, request, body, wid, token, mid):
        found = self._webhook_message(request, wid, token, mid)
        if isinstance(found, web.Response):
            return found
        return await self._delete(*found)

    def _reaction_data(self, cid: int, mid: int, uid: int, emoji: str) -> dict:
        data = {"user_id": str(uid), "channel_id": str(cid), "message_id": str(mid),
                "emoji": {"id": None, "name": emoji}, "burst": False, "type": 0}
        if self.channels[cid].get("guild_id"):
            data["guild_id"] = self.channels[cid]["guild_id"]
        return data

    async def react(self, cid: int, mid: int, uid: int, emoji: str, add: bool = True) -> bool:
        """`uid` adds (or removes) a reaction; a gateway dispatch when it changed anything."""
        who = self.reactors.setdefault(mid, {}).setdefault(emoji, [])
        if add == (uid in who):
            return False
        if add:
            who.append(uid)
            data = self._reaction_data(cid, mid, uid, emoji)
            if self.channels[cid].get("guild_id"):
                data["member"] = self.member(uid)
            await self.dispatch("MESSAGE_REACTION_ADD", data)
        else:
            who.remove(uid)
            await self.dispatch("MESSAGE_REACTION_REMOVE", self._reaction_data(cid, mid, uid, emoji))
        return True

    def reactions(self, cid: int, mid: int) -> dict[str, list[int]]:
        """The reactions a message shows now: emoji -> who, without empty ones."""
        return {e: list(u) for e, u in self.reactors.get(mid, {}).items() if u}

    async def _own_reaction(self, request, body, cid, mid, emoji):
        msg = self.find_message(int(cid), int(mid))
        if msg is None:
            return self._unknown_message()
        if not emoji or any(c.isascii() and c.isalnum() for c in emoji) or len(emoji) > 16:
            return json_answer({"message": "Unknown Emoji", "code": 10014}, 400)  # custom emoji need name:id
        await self.react(int(cid), int(mid), BOT_ID, emoji, request.method == "PUT")
        return web.Response(status=204)
