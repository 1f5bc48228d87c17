"""A list a tenant asks for shows only its own objects, with the list contract intact.

The upstream holds every tenant's assistants, files and vector stores under one key, so the gateway
walks the upstream's own list in the order asked, in pages of `PAGE`, keeps the caller's objects and
answers once it has `limit` of them and knows whether more follow: `after` walks forward from its
cursor, `before` backward from its cursor (the `limit` objects right before it), and `first_id`,
`last_id` and `has_more` describe the page the caller got, so the SDK's auto-paging works as is.

A walk reads at most `SCAN_PAGES` upstream pages. If it stops there, `has_more` is true and the
caller's next page goes on from the last object it got; a page can come back short (even empty)
when the caller's objects are more than `PAGE * SCAN_PAGES` of other tenants' objects apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from gateway.domain import json_object
from gateway.errors import InvalidRequest
from gateway.http.relay import read_json, relay, response_headers
from gateway.http.upstream import Reply
from gateway.keys import CALLER, REQUEST_ID, REQUEST_RUNTIME, STATE
from gateway.pipeline.forward import forward
from gateway.pipeline.ownership import owned_by, owners_of
from gateway.pipeline.tenancy import FILE, Kind

PAGE = 100  # the most the list endpoints give at once
SCAN_PAGES = 20
_MAX_LIMIT = {FILE: 10_000}  # files list up to 10,000 at once; the others up to 100
_CURSORS = ("limit", "order", "after", "before")

Item = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ListQuery:
    limit: int
    order: str
    after: str | None
    before: str | None
    rest: tuple[tuple[str, str], ...]  # other filters (a file's `purpose`), passed on as they are

    @classmethod
    def parse(cls, query: MultiMapping[str], kind: Kind) -> ListQuery:
        most = _MAX_LIMIT.get(kind, PAGE)
        raw_limit = query.get("limit", "20")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= most:
            raise InvalidRequest(
                f"Invalid 'limit': expected an integer from 1 to {most}, got {raw_limit!r}.",
                param="limit",
                code="invalid_value",
            )
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequest(
                f"Invalid 'order': expected 'asc' or 'desc', got {order!r}.", param="order", code="invalid_value"
            )
        rest = tuple((name, value) for name, value in query.items() if name not in _CURSORS)
        return cls(int(raw_limit), order, query.get("after"), query.get("before"), rest)

    def upstream(self, *, after: str | None, before: str | None) -> str:
        cursors = [("after", after), ("before", before)]
        return urlencode([("limit", str(PAGE)), ("order", self.order), *((n, v) for n, v in cursors if v), *self.rest])


async def owned_list(request: web.Request, kind: Kind) -> web.StreamResponse:
    """The caller's page of `kind`, walked out of the upstream's list of everyone's."""
    query = ListQuery.parse(request.query, kind)
    walk = _backward if query.before is not None else _forward
    pager = _Pager(request, query)
    try:
        page, has_more = await walk(pager)
    except _Refused as refused:  # the upstream's own error, passed on as any other (keys masked)
        return await relay(request, refused.reply, request[REQUEST_ID], max_json_bytes=pager.max_bytes)
    headers = pager.headers
    headers.popall("Content-Encoding", None)
    headers.popall("Content-Type", None)
    listed = {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": has_more,
    }
    return web.Response(body=orjson.dumps(listed), content_type="application/json", headers=headers)


class _Refused(Exception):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply


class _Pager:
    """Upstream pages of the list, each cut down to the caller's objects."""

    def __init__(self, request: web.Request, query: ListQuery) -> None:
        self.request, self.query = request, query
        runtime, tenant = request[REQUEST_RUNTIME], request[CALLER].tenant
        self._tenant, self._unknown_allowed = tenant, runtime.unknown_objects_allowed(tenant)
        self.max_bytes = runtime.config.upstream.max_response_bytes
        self.headers: CIMultiDict[str] = CIMultiDict()  # the last upstream page's (its request id)

    async def page(self, *, after: str | None, before: str | None) -> tuple[list[Item], list[Item], bool]:
        """(all objects of the upstream page, the caller's among them, whether the upstream has more)."""
        reply = await forward(self.request, None, query=self.query.upstream(after=after, before=before))
        if reply.status != 200:
            raise _Refused(reply)
        try:
            body = await read_json(reply, self.max_bytes)
            self.headers = response_headers(reply, self.request[REQUEST_ID])
        finally:
            reply.release()
        listed = json_object(body or b"")
        items = [
            item for item in listed.get("data") or () if isinstance(item, dict) and isinstance(item.get("id"), str)
        ]
        owners = await owners_of(self.request[REQUEST_RUNTIME], self.request.app[STATE], [item["id"] for item in items])
        mine = [
            item
            for item, owner in zip(items, owners, strict=True)
            if owned_by(owner, self._tenant, self._unknown_allowed)
        ]
        return items, mine, listed.get("has_more") is True


async def _forward(pager: _Pager) -> tuple[list[Item], bool]:
    limit, cursor, kept = pager.query.limit, pager.query.after, list[Item]()
    for _ in range(SCAN_PAGES):
        items, mine, more = await pager.page(after=cursor, before=None)
        kept += mine
        if len(kept) > limit:
            return kept[:limit], True
        if not more or not items:
            return kept, False
        cursor = items[-1]["id"]
    return kept, True


async def _backward(pager: _Pager) -> tuple[list[Item], bool]:
    limit, cursor, kept = pager.query.limit, pager.query.before, list[Item]()
    for _ in range(SCAN_PAGES):
        items, mine, more = await pager.page(after=pager.query.after, before=cursor)
        kept = mine + kept
        if len(kept) > limit:
            return kept[-limit:], True
        if not more or not items:
            return kept, False
        cursor = items[0]["id"]
    return kept, True
