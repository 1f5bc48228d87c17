"""A run call's stages, in order, on one screen.

`POST /v1/threads/runs` (create thread and run), `POST /v1/threads/{thread_id}/runs` and
`POST /v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs`. Authentication ran before, as
middleware (`pipeline/middlewares.py`), for every `/v1/` call. Each stage is one module of this
package; the record stage is not a step: observers hear the tracker's events as the call goes
(decided, responded, each event, finished), and never decide or block.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.http.finish import to_the_end
from gateway.pipeline.admit import admission, audit_room
from gateway.pipeline.call import RunCall
from gateway.pipeline.enforce import enforce
from gateway.pipeline.forward import forward_run, relay_run
from gateway.pipeline.ownership import own_objects
from gateway.pipeline.validate import validate
from gateway.schema.requests import RunRoute


def run_call(route: RunRoute) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        call = RunCall.begin(request, route)  # caller, tenant, runtime, state; the clock starts
        await validate(call)  # parse + validate: 400, 408, 413
        await own_objects(call)  # another tenant's thread, assistant, file or vector store: 404
        await audit_room(call)  # audit backpressure: waits while the audit sink is behind
        try:
            await enforce(call)  # policy: 403 naming every violation, or clamped caps
            async with admission(call):  # limits: 429; tokens reserved; leases held to the end
                upstream = await forward_run(call)  # the upstream adapter: 502/504 if it fails
                return await relay_run(call, upstream)  # bytes out as they come; SSE teed to the tracker
        except BaseException as exc:  # a refusal, or the client gone: the outcome is recorded all the same
            call.tracker.failed(exc)
            raise
        finally:
            await to_the_end(call.settlement.close(call.record))  # usage settled once per run; unused reservation back

    return handle
