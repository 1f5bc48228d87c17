"""Hot reload: SIGHUP, a change to the config file, or POST /admin/reload.

The new file is validated in full and the runtime swapped in one assignment; an invalid file keeps
the old config serving and is reported (log, a `config_reloaded` event for the observers, and
the admin call's answer). The listen address, the pool size and the metrics port need a restart.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from aiohttp import web
from watchfiles import awatch

from gateway.config import ConfigError, load_config
from gateway.keys import CONFIG_PATH, RECORDER, RUNTIME, UPSTREAM_OVERRIDE
from gateway.runtime import Runtime

log = structlog.get_logger("gateway.reload")


@dataclass(frozen=True, slots=True)
class Reloaded:
    ok: bool
    problems: tuple[str, ...] = ()


async def reload_config(app: web.Application) -> Reloaded:
    path = app.get(CONFIG_PATH)
    if path is None:
        return Reloaded(False, ("the gateway was started without a config file",))
    try:
        config = await asyncio.to_thread(load_config, path)
    except ConfigError as exc:
        app[RECORDER].config_reloaded(False)
        log.error("config_reload_failed", path=str(path), problems=exc.problems)
        return Reloaded(False, tuple(exc.problems))
    if UPSTREAM_OVERRIDE in app:
        config = config.with_upstream(app[UPSTREAM_OVERRIDE])
    holder = app[RUNTIME]
    old = holder.current.config
    metrics, old_metrics = config.telemetry.metrics, old.telemetry.metrics
    moved = (metrics.host, metrics.port) != (old_metrics.host, old_metrics.port)
    if config.listen != old.listen or config.upstream.pool_size != old.upstream.pool_size or moved:
        log.warning(
            "config_reload_partial",
            detail="listen, upstream.pool_size and telemetry.metrics host and port apply after a restart",
        )
    holder.current = Runtime.from_config(config)
    app[RECORDER].config_reloaded(True)
    log.info("config_reloaded", path=str(path), summary=config.summary())
    return Reloaded(True)


async def reload_triggers(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: SIGHUP and file changes reload, for apps started from a file."""
    path = app.get(CONFIG_PATH)
    if path is None:
        yield
        return
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[Reloaded]] = set()

    def on_sighup() -> None:
        task = loop.create_task(reload_config(app))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    stop = asyncio.Event()
    watcher = loop.create_task(_watch(app, stop))
    yield
    stop.set()
    loop.remove_signal_handler(signal.SIGHUP)
    await watcher
    await asyncio.gather(*tasks, return_exceptions=True)


async def _watch(app: web.Application, stop: asyncio.Event) -> None:
    path = app[CONFIG_PATH].resolve()
    # The folder, not the file: editors and ConfigMaps replace files by renaming over them.
    async for _changes in awatch(
        path.parent, watch_filter=lambda _change, changed: changed == str(path), stop_event=stop, debounce=200, step=50
    ):
        await reload_config(app)
