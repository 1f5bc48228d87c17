"""The facade's assistants: the platform's own (`assistants:` in the config, read-only) and those a
tenant creates through `/v1/assistants` (kept in the state store, `assistant:<id>`, seen only by it).

Both are served in the Assistants API's shape, and both are what a run's definition comes from.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from gateway.config.assistants import AssistantConfig
from gateway.domain import json_object
from gateway.http.upstream import Reply
from gateway.ids import token
from gateway.state import StateStore
from gateway.upstreams import Call
from gateway.upstreams.responses.replies import JsonReply, deleted, paged

KEPT_S = 10 * 365 * 24 * 3600.0  # an assistant lives until it is deleted
_FIELDS = frozenset(AssistantConfig.model_fields) - {"tenants"}


class Assistants:
    def __init__(self, configured: Mapping[str, AssistantConfig]) -> None:
        self._configured = configured
        self._configured_at = int(time.time())

    async def find(self, state: StateStore, tenant: str, assistant_id: str) -> tuple[AssistantConfig, int] | None:
        """The assistant and when it was made, if `tenant` may use it."""
        configured = self._configured.get(assistant_id)
        if configured is not None:
            return (configured, self._configured_at) if configured.open_to(tenant) else None
        kept = json_object(await state.get_record("assistant", assistant_id) or b"")
        if kept.get("tenant") != tenant or not isinstance(kept.get("definition"), Mapping):
            return None
        return AssistantConfig.model_validate(kept["definition"]), int(kept.get("created_at") or 0)

    async def serve(self, call: Call, parts: list[str], query: Mapping[str, str]) -> Reply:
        """`/v1/assistants[/{id}]`: create, list, retrieve, update, delete."""
        if len(parts) == 1:
            return await (self._create(call) if call.method == "POST" else self._list(call, query))
        found = await self.find(call.state, call.tenant, parts[1])
        if found is None:
            return not_found(parts[1])
        if call.method == "GET":
            return JsonReply(200, found[0].as_json(parts[1], found[1]))
        if parts[1] in self._configured:
            return JsonReply.error(400, f"Assistant '{parts[1]}' is defined by the platform's config: change it there.", None)
        if call.method == "DELETE":
            await call.state.put_record("assistant", parts[1], b"{}", 1)
            await call.state.remove_from_list("assistants", call.tenant, parts[1])
            return deleted(parts[1], "assistant")
        return await self._store(call, parts[1], found[1], {**found[0].model_dump(exclude={"tenants"}), **_body(call)})

    async def _create(self, call: Call) -> Reply:
        assistant_id = f"asst_{token()}"
        reply = await self._store(call, assistant_id, int(time.time()), _body(call))
        if reply.status == 200:
            await call.state.add_to_list("assistants", call.tenant, assistant_id, KEPT_S)
        return reply

    async def _store(self, call: Call, assistant_id: str, created_at: int, fields: dict[str, Any]) -> Reply:
        unknown = sorted(set(fields) - _FIELDS)
        if unknown:
            return JsonReply.error(400, f"Unrecognized request argument supplied: {unknown[0]}", "unknown_parameter", param=unknown[0])
        try:
            assistant = AssistantConfig.model_validate(fields)
        except ValidationError as exc:
            error = exc.errors()[0]
            param = ".".join(str(part) for part in error["loc"])
            return JsonReply.error(400, f"Invalid '{param}': {error['msg']}.", "invalid_value", param=param)
        record = {"tenant": call.tenant, "created_at": created_at, "definition": assistant.model_dump(exclude={"tenants"})}
        await call.state.put_record("assistant", assistant_id, orjson.dumps(record), KEPT_S)
        return JsonReply(200, assistant.as_json(assistant_id, created_at))

    async def _list(self, call: Call, query: Mapping[str, str]) -> Reply:
        mine = []
        for assistant_id in await call.state.list_members("assistants", call.tenant):
            found = await self.find(call.state, call.tenant, assistant_id)
            if found is not None:
                mine.append(found[0].as_json(assistant_id, found[1]))
        platform = [a.as_json(i, self._configured_at) for i, a in sorted(self._configured.items()) if a.open_to(call.tenant)]
        return paged([*platform, *mine], query)


def not_found(assistant_id: str) -> JsonReply:
    return JsonReply.error(404, f"No assistant found with id '{assistant_id}'.", None)


def _body(call: Call) -> dict[str, Any]:
    return dict(json_object(call.body if isinstance(call.body, bytes) else b""))
