"""The forward stage: the call goes to the upstream adapter; its answer is relayed as it comes.

Same method, path and query below the API root, hygienic headers, the upstream credential; the
adapter (`gateway/upstreams`) decides what that means for its protocol. Client spans, when tracing
is on, hang off the pooled session's `TraceConfig`: this stage has one code path either way.
"""

from __future__ import annotations

from aiohttp import web

from gateway.http.relay import relay_run as tee
from gateway.http.upstream import Body, Reply
from gateway.keys import CALLER, DRAIN, REQUEST_ID, REQUEST_RUNTIME, SESSION, STATE
from gateway.pipeline.call import RunCall
from gateway.upstreams import Call

API_ROOT = "/v1"


async def forward(request: web.Request, body: Body, *, query: str | None = None) -> Reply:
    """The call upstream; `query` (encoded) in place of the client's, for a call the gateway pages itself."""
    upstream, caller = request[REQUEST_RUNTIME].upstream, request[CALLER]
    headers = upstream.headers(request.headers, request[REQUEST_ID], caller.upstream_authorization)
    if body is None:  # (a body the client sent with a GET is not passed on: its length must not be)
        headers.popall("Content-Length", None)
        headers.popall("Transfer-Encoding", None)
    raw_path = request.rel_url.raw_path.removeprefix(API_ROOT)
    query = request.rel_url.raw_query_string if query is None else query
    call = Call(request.app[SESSION], request.method, raw_path, query, headers, body, caller.tenant, request.app[STATE])
    return await upstream.forward(call)


async def forward_run(call: RunCall) -> Reply:
    return await forward(call.request, call.body)


async def relay_run(call: RunCall, upstream: Reply) -> web.StreamResponse:
    """Streams are teed to the tracker, run objects read by it; the client gets the bytes first."""
    max_json = call.runtime.config.upstream.max_response_bytes
    drain = call.request.app[DRAIN]
    return await tee(call.request, upstream, call.record.request_id, call.tracker, max_json, drain, call.headers)
