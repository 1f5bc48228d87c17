"""The thinnest aiohttp + uvloop pass-through: the ceiling for any aiohttp gateway.

    python bench/bare_proxy.py --port 9100 --upstream http://127.0.0.1:8081

Same method, path, query, headers and body upstream; the response streams back chunk by chunk
(so SSE is relayed as it arrives). No validation, no policy, no telemetry.
"""

import argparse

import aiohttp
import uvloop
from aiohttp import web

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


def build(upstream: str, pool: int) -> web.Application:
    async def session_ctx(app: web.Application):
        connector = aiohttp.TCPConnector(limit=pool)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as app["session"]:
            yield

    async def proxy(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        body = await request.read()
        async with request.app["session"].request(
            request.method, upstream + request.rel_url.raw_path_qs, headers=headers, data=body,
            allow_redirects=False, skip_auto_headers=("User-Agent", "Accept-Encoding"),
        ) as up:
            out = {k: v for k, v in up.headers.items() if k.lower() not in HOP}
            response = web.StreamResponse(status=up.status, headers=out)
            if up.content_length is not None:
                response.content_length = up.content_length
            await response.prepare(request)
            async for chunk in up.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="origin, e.g. http://127.0.0.1:8081 (no path)")
    parser.add_argument("--pool", type=int, default=10_000, help="upstream connections")
    args = parser.parse_args()
    web.run_app(
        build(args.upstream.rstrip("/"), args.pool), host=args.host, port=args.port,
        access_log=None, print=None, handler_cancellation=True, loop=uvloop.new_event_loop(),
    )
