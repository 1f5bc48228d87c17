"""The gateway's own OpenAPI document, served on `GET /openapi.json`: its routes, not the upstream's API.

The three run calls carry their request bodies (the strict request models' JSON Schema); the rest
of `/v1/` is described as what it is, a pass-through of the configured prefixes; every refusal the
gateway makes is OpenAI's error envelope.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.keys import REQUEST_RUNTIME
from gateway.schema.requests import CreateRunRequest, CreateThreadAndRunRequest, SubmitToolOutputsRequest

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"
_JSON = "application/json"

# Every status the gateway answers with on its own, and why; the upstream's own answers pass through.
_ERRORS: dict[str, str] = {
    "400": "Malformed or invalid request: unparsable JSON (`invalid_json`), a repeated key (`duplicate_key`), "
    "a schema violation (`param` names the field), an unsupported Content-Type or Content-Encoding, a header "
    "that is not UTF-8. Also the upstream's own 400.",
    "401": "Missing or unknown API key (`invalid_api_key`).",
    "403": "Denied by the tenant's policy (`policy_violation`; `param` is the first offending field).",
    "404": "Unknown route, a path outside the pass-through allowlist, another tenant's thread, or the "
    "upstream's own 404.",
    "408": "The request body did not arrive in time (`request_timeout`); the connection is closed.",
    "413": "The request body is over the gateway's limit (`request_too_large`).",
    "429": "A rate limit or token budget (`rate_limit_exceeded`, type `requests` or `tokens`), with "
    "`retry-after` and `x-ratelimit-*` headers; or the upstream's own 429, passed through. On /admin/* and a keyed "
    "/metrics: too many wrong keys from the client's address (`too_many_failed_attempts`), with `retry-after`.",
    "500": "The upstream's own server error, passed through as is.",
    "502": "The upstream could not be reached or broke (`upstream_unavailable`, `upstream_response_too_large`).",
    "503": "Shared state unreachable with `state.on_failure: fail_closed` (`state_unavailable`), the audit log "
    "unwritable with `audit.on_failure: fail_closed` (`audit_unavailable`, run calls), or the upstream's own 503.",
    "504": "The upstream did not answer in time (`upstream_timeout`).",
}
_RUN_CALL_ERRORS = ("400", "401", "403", "404", "408", "413", "429", "500", "502", "503", "504")
_PASSTHROUGH_ERRORS = ("400", "401", "404", "408", "413", "429", "500", "502", "503", "504")
_PASSTHROUGH_METHODS = ("get", "post", "delete")

_RUN_CALLS = (
    (
        "/v1/threads/runs",
        "createThreadAndRun",
        "Create a thread and run it",
        CreateThreadAndRunRequest,
        (),
    ),
    (
        "/v1/threads/{thread_id}/runs",
        "createRun",
        "Create a run",
        CreateRunRequest,
        ("thread_id",),
    ),
    (
        "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
        "submitToolOuputsToRun",  # sic: OpenAI's own operationId
        "Submit tool outputs to a run",
        SubmitToolOutputsRequest,
        ("thread_id", "run_id"),
    ),
)


def openapi_document(allowed_paths: tuple[str, ...]) -> dict[str, Any]:
    """The document for a config whose `upstream.allowed_paths` are these pass-through prefixes."""
    paths: dict[str, Any] = {}
    for prefix in allowed_paths:
        paths[f"/v1{prefix}"] = _passthrough(prefix, ())
        paths[f"/v1{prefix}/{{path}}"] = _passthrough(prefix, ("path",))
    for path, operation_id, summary, model, params in _RUN_CALLS:
        paths.setdefault(path, {})["post"] = _run_call(operation_id, summary, model.__name__, params)
    paths.update(_own_endpoints())
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Assistants gateway",
            "version": "1",
            "description": "An observability and policy gateway for the OpenAI Assistants API. Run calls are "
            "validated, judged by the tenant's policy and rate limits, then forwarded byte for byte; the rest of "
            "the allowed `/v1/` paths pass through. Errors use OpenAI's envelope.",
        },
        "paths": paths,
        "components": {
            "schemas": {**_request_schemas(), "ErrorResponse": _ERROR_RESPONSE},
            "responses": {status: _error_response(description) for status, description in _ERRORS.items()},
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "A tenant's key (or the caller's "
                           "own OpenAI key in pass-through and caller-credential modes)."},
                "adminKey": {"type": "http", "scheme": "bearer", "description": "One of `admin.keys`."},
            },
        },
    }  # fmt: skip


async def openapi_endpoint(request: web.Request) -> web.Response:
    document = _serialised(request[REQUEST_RUNTIME].config.upstream.allowed_paths)
    return web.Response(body=document, content_type=_JSON)


@cache
def _serialised(allowed_paths: tuple[str, ...]) -> bytes:
    return orjson.dumps(openapi_document(allowed_paths))


@cache
def _request_schemas() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (model, "validation") for model in (CreateThreadAndRunRequest, CreateRunRequest, SubmitToolOutputsRequest)
    ]
    _, top = models_json_schema(models, ref_template=_REF)
    return dict(top["$defs"])


_ERROR_RESPONSE: dict[str, Any] = {
    "type": "object",
    "description": "OpenAI's error envelope.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "examples": ["invalid_request_error", "permission_error", "upstream_error"]},
                "param": {"type": ["string", "null"], "description": "The offending body field, as a dotted path."},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {_JSON: {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }


def _errors(statuses: tuple[str, ...]) -> dict[str, Any]:
    return {status: {"$ref": f"#/components/responses/{status}"} for status in statuses}


def _path_params(names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]


def _run_call(operation_id: str, summary: str, model: str, params: tuple[str, ...]) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": "Validated strictly against the OpenAI spec (unknown fields are refused unless "
        "`upstream.unknown_fields: pass`), judged by the tenant's policy, admitted by its limits, then forwarded "
        "byte for byte. With `stream: true` the answer is the upstream's event stream, relayed as it arrives.",
        "tags": ["run calls"],
        "security": [{"apiKey": []}],
        "parameters": _path_params(params),
        "requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": _REF.format(model=model)}}}},
        "responses": {
            "200": {
                "description": "The run object, or its event stream.",
                "content": {_JSON: {"schema": {"type": "object"}}, "text/event-stream": {"schema": {"type": "string"}}},
            },
            **_errors(_RUN_CALL_ERRORS),
        },
    }


def _passthrough(prefix: str, params: tuple[str, ...]) -> dict[str, Any]:
    below = " and anything below it (`path` may hold several segments)" if params else ""
    operations: dict[str, Any] = {}
    for method in _PASSTHROUGH_METHODS:
        operation: dict[str, Any] = {
            "operationId": f"{method}{prefix.replace('/', '_')}{'_path' if params else ''}",
            "summary": f"Pass-through: {method.upper()} /v1{prefix}{below}",
            "description": "Forwarded to the upstream with hygienic headers and the upstream credential; "
            "bodies stream both ways (up to `listen.max_upload_bytes`). Another tenant's thread answers 404.",
            "tags": ["pass-through"],
            "security": [{"apiKey": []}],
            "parameters": _path_params(params),
            "responses": {
                "200": {"description": "The upstream's answer, as is.", "content": {"*/*": {"schema": {}}}},
                **_errors(_PASSTHROUGH_ERRORS),
            },
        }
        if method == "post":
            operation["requestBody"] = {"required": False, "content": {"*/*": {"schema": {}}}}
        operations[method] = operation
    return operations


def _own_endpoints() -> dict[str, Any]:
    status = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    plain = {"content": {_JSON: {"schema": status}}}
    return {
        "/healthz": {"get": {
            "operationId": "healthz", "summary": "The process is up.", "tags": ["operations"],
            "responses": {"200": {"description": "Up.", **plain}},
        }},
        "/readyz": {"get": {
            "operationId": "readyz", "summary": "The upstream pool is ready and the gateway not draining.",
            "tags": ["operations"],
            "responses": {"200": {"description": "Ready.", **plain},
                          "503": {"description": "Starting or draining.", **plain}},
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics (text exposition format).", "tags": ["operations"],
            "description": "Needs one of `telemetry.metrics.keys` as a bearer key when they are set; served on "
                           "`telemetry.metrics.port` instead (404 here) when that is set.",
            "responses": {"200": {"description": "The gateway_* metrics.",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_errors(("401", "404", "429"))},
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document.", "tags": ["operations"],
            "responses": {"200": {"description": "OpenAPI 3.1.", "content": {_JSON: {"schema": {"type": "object"}}}}},
        }},
        "/admin/reload": {"post": {
            "operationId": "adminReload", "summary": "Validate the config file and swap it in atomically.",
            "tags": ["admin"], "security": [{"adminKey": []}],
            "responses": {
                "200": {"description": "Reloaded.", "content": {_JSON: {"schema": {"type": "object"}}}},
                **_errors(("400", "401", "429")),
                "404": {"$ref": "#/components/responses/404"},
            },
        }},
        "/admin/usage": {"get": {
            "operationId": "adminUsage", "summary": "Tokens and runs per tenant, model and UTC day.",
            "tags": ["admin"], "security": [{"adminKey": []}],
            "parameters": [
                {"name": "tenant", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "since", "in": "query", "required": False,
                 "schema": {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "maxLength": 0}]},
                 "description": "YYYY-MM-DD; absent or empty: 30 days ago."},
            ],
            "responses": {
                "200": {"description": "Usage rows.", "content": {_JSON: {"schema": {"type": "object"}}}},
                **_errors(("400", "401", "404", "429", "503")),
            },
        }},
    }  # fmt: skip
