"""Writing event streams: one chunk per event, paced, with the mid-stream faults, and accounting of
clients that leave early."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aiohttp import web

from .faults import FAULT, Fault, FaultKind
from .responses import header_number
from .sse import Frame
from .state import SimulatorState, state_of

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
EVENT_DELAY_HEADER = "X-Simulator-Event-Delay-Ms"
# How long the body stays open after its last event (`[DONE]`) before it ends: as a real upstream's may.
TAIL_HEADER = "X-Simulator-Tail-Ms"
# What the real API sends inside a stream when the server fails mid-run.
STREAM_ERROR = Frame(
    "error",
    {
        "error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": "server_error",
        }
    },
)


def event_delay_s(request: web.Request, default_ms: float) -> float:
    raw = request.headers.get(EVENT_DELAY_HEADER)
    return (default_ms if raw is None else header_number(raw, EVENT_DELAY_HEADER, "milliseconds")) / 1000


async def write_stream(
    request: web.Request,
    frames: Sequence[Frame],
    *,
    status: int = 200,
    content_type: str = SSE_CONTENT_TYPE,
    error: Frame = STREAM_ERROR,
    stop: Callable[[], bool] | None = None,
) -> web.StreamResponse:
    """Write `frames` as an SSE response, applying each to the state as it goes out.

    Paced by the event delay and interrupted by the mid-stream fault the request asks for, if any;
    `error` is the event an `error-event` fault sends (each API words it its own way); `stop`, asked
    before each event, ends the stream there (a response cancelled from elsewhere).
    """
    state = state_of(request)
    delay_s = event_delay_s(request, state.settings.event_delay_ms)
    response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
    fault = request.get(FAULT)
    strike = fault if fault and fault.mid_stream else None
    # A mid-stream fault strikes after `after` events, at the latest before the final one.
    strike_at = min(strike.after, len(frames) - 1) if strike else -1
    applied = 0
    state.open_streams += 1
    try:
        await response.prepare(request)
        for index, frame in enumerate(frames):
            if index and delay_s:
                await asyncio.sleep(delay_s)
            if stop is not None and stop():
                frames = frames[:applied]  # what is left never happens
                break
            if strike and index == strike_at:
                await _strike(request, response, strike, state, error)
                return response
            state.apply(frame)
            applied += 1
            for chunk in frame.chunks():
                await response.write(chunk)
        if tail_ms := request.headers.get(TAIL_HEADER):
            await asyncio.sleep(header_number(tail_ms, TAIL_HEADER, "milliseconds") / 1000)
        await response.write_eof()
    except ConnectionResetError:
        # The client hung up; aiohttp notices by itself that the response cannot be finished.
        state.aborted_streams += 1
    except asyncio.CancelledError:
        state.aborted_streams += 1
        raise
    finally:
        state.open_streams -= 1
        # The run carries on server-side whatever became of the connection.
        for frame in frames[applied:]:
            state.apply(frame)
    return response


async def _strike(
    request: web.Request, response: web.StreamResponse, fault: Fault, state: SimulatorState, error: Frame
) -> None:
    if fault.kind is FaultKind.ERROR_EVENT:
        for chunk in error.chunks():
            await response.write(chunk)
        await response.write_eof()
        return
    if fault.kind is FaultKind.HANG_MID_STREAM:
        await stall(request, state)
    # `drop`, or a stall cut short by shutdown: end the connection without finishing the chunked
    # body, so the client sees a broken stream rather than a complete one.
    abort_connection(request)


async def stall(request: web.Request, state: SimulatorState) -> None:
    """Send nothing until the client goes away (raises ConnectionResetError) or the app stops.

    Polls the transport because servers run without handler cancellation never tell a handler
    that its client left; where they do, the cancellation ends the wait just as well.
    """
    while not state.stopping.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client went away")
        await asyncio.sleep(state.settings.hang_check_interval_s)


def abort_connection(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()
