"""A no-op OTLP/HTTP trace receiver: accepts every export, counts requests, bytes and spans.

    python bench/otlp_sink.py --port 4318        GET /stats → {"requests", "bytes", "spans"}

The gateway exports to it with its real BatchSpanProcessor and OTLP/HTTP protobuf exporter, so the
gateway pays the whole cost of tracing (span creation, batching, protobuf encoding, the HTTP POST);
only the collector's work is left out. Spans are counted by decoding each export.
"""

import argparse

import uvloop
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

EMPTY = ExportTraceServiceResponse().SerializeToString()


def build() -> web.Application:
    stats = {"requests": 0, "bytes": 0, "spans": 0, "undecodable": 0}

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        stats["requests"] += 1
        stats["bytes"] += len(body)
        if request.headers.get("Content-Encoding") == "gzip":
            import gzip

            body = gzip.decompress(body)
        try:
            export = ExportTraceServiceRequest.FromString(body)
            stats["spans"] += sum(len(s.spans) for r in export.resource_spans for s in r.scope_spans)
        except Exception:
            stats["undecodable"] += 1
        return web.Response(body=EMPTY, content_type="application/x-protobuf")

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/stats", get_stats)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(build(), host=args.host, port=args.port, access_log=None, print=None, loop=uvloop.new_event_loop())
