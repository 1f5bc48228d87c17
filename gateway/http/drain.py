"""The drain deadline: after SIGTERM, open streams flow on for `listen.drain_timeout_s`, then the
gateway itself ends each one with a final `error` event.

aiohttp's own shutdown cannot do this: it waits its `shutdown_timeout` for handlers, then only
fails the request's body (a streaming handler is not reading it) and waits as long again before it
cancels the handler, which drops the connection mid-stream: no final event, twice the timeout, and
to the handler it looks like the client left. So the relay reads each upstream chunk under this
deadline instead, and aiohttp's timeout is only the backstop (`gateway/cli/serve.py`).
"""

from __future__ import annotations

import asyncio

from gateway.http.upstream import ReplyContent


class StreamCut(Exception):
    """The drain deadline passed while the stream was waiting for its next upstream chunk."""


class DrainDeadline:
    """Unset until `start`; from then, every read of an open stream ends at the same moment."""

    def __init__(self, after_s: float) -> None:
        self._after_s = after_s
        self._when: float | None = None
        self._waiting: set[asyncio.Timeout] = set()  # the reads in flight, to move their deadline

    def start(self) -> None:
        """The gateway was told to stop: open streams have `after_s` left from now."""
        if self._when is not None:
            return
        self._when = asyncio.get_running_loop().time() + self._after_s
        for bound in self._waiting:
            bound.reschedule(self._when)

    async def read(self, content: ReplyContent) -> bytes:
        """The upstream's next chunk (b"" at its end); `StreamCut` once the deadline has passed."""
        bound = asyncio.timeout_at(self._when)
        try:
            async with bound:
                self._waiting.add(bound)
                try:
                    return await content.readany()
                finally:
                    self._waiting.discard(bound)
        except TimeoutError:
            if bound.expired():
                raise StreamCut from None
            raise  # the upstream's own read timeout: a broken stream, not a cut one
