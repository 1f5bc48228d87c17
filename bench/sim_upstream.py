"""The built-in simulator as the streaming upstream of the benchmark, unchanged, plus two bench-only knobs.

    python bench/sim_upstream.py --port 8081 [--reuse-port] [--stamps DIR]

- `--reuse-port`: several of these processes may listen on one port (SO_REUSEPORT), if the simulator
  itself turns out to be the bottleneck.
- A known assistant `asst_bench` (model gpt-4o, tools: code_interpreter) exists in every process, so
  runs work whichever process a request lands on.
- `--stamps DIR`: for a request carrying `X-Bench-Stream: <id>`, the monotonic time (CLOCK_MONOTONIC,
  shared by every process of the machine) at which each chunk of its event stream is handed to the
  socket is written to DIR/stamps-<pid>.txt as `<id> <chunk index> <ns> <event name>`. The simulator writes each
  event it builds as one chunk, so the client can subtract these stamps from the time it received
  each event: the relay delay of every event, through whatever proxy sits in between.

The bytes on the wire are the simulator's own; nothing else changes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import uvloop
from aiohttp import web

from gateway.simulator import SimulatorSettings, build_simulator_app, objects
from gateway.simulator import streams as sim_streams
from gateway.simulator.state import SIMULATOR_STATE

ASSISTANT_ID = "asst_bench"
STAMPS: list[str] = []


class StampedResponse(web.StreamResponse):
    _bench_id: str | None = None
    _chunks = 0

    async def prepare(self, request: web.BaseRequest):  # type: ignore[override]
        self._bench_id = request.headers.get("X-Bench-Stream")
        return await super().prepare(request)

    async def write(self, data) -> None:  # type: ignore[override]
        if self._bench_id is not None:
            name = bytes(data[7 : data.find(b"\n")]).decode(errors="replace") if data.startswith(b"event: ") else "-"
            STAMPS.append(f"{self._bench_id} {self._chunks} {time.monotonic_ns()} {name}\n")
            self._chunks += 1
        await super().write(data)


class _Web:
    """`web` as seen by the simulator's stream writer: the same module, with the stamping response."""

    def __getattr__(self, name: str):
        return StampedResponse if name == "StreamResponse" else getattr(web, name)


def build(stamps: Path | None) -> web.Application:
    app = build_simulator_app(SimulatorSettings())
    state = app[SIMULATOR_STATE]
    tools = objects.normalize_tools([{"type": "code_interpreter"}])
    assistant = objects.assistant({"model": "gpt-4o", "name": "bench"}, tools, {"code_interpreter": {"file_ids": []}})
    assistant["id"] = ASSISTANT_ID
    state.assistants[ASSISTANT_ID] = assistant
    if stamps is not None:
        sim_streams.web = _Web()  # type: ignore[assignment]
        path = stamps / f"stamps-{os.getpid()}.txt"

        def flush() -> None:
            if STAMPS:
                lines = "".join(STAMPS)
                STAMPS.clear()
                with path.open("a") as out:
                    out.write(lines)

        async def flusher(app: web.Application):
            async def loop() -> None:
                while True:
                    await asyncio.sleep(0.5)
                    flush()

            task = asyncio.get_running_loop().create_task(loop())
            yield
            task.cancel()
            flush()

        app.cleanup_ctx.append(flusher)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reuse-port", action="store_true")
    parser.add_argument("--stamps", type=Path, help="directory for per-chunk send stamps")
    args = parser.parse_args()
    web.run_app(
        build(args.stamps), host=args.host, port=args.port, reuse_port=args.reuse_port,
        access_log=None, print=None, loop=uvloop.new_event_loop(),
    )
