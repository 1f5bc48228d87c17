"""Application logs through structlog: JSON in production, pretty in a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from gateway.config import TelemetryConfig


def configure_logging(config: TelemetryConfig) -> None:
    level = getattr(logging, config.log_level.upper())
    pretty = config.log_format == "console" or (config.log_format == "auto" and sys.stderr.isatty())
    renderer = structlog.dev.ConsoleRenderer() if pretty else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write per line (print() writes the newline apart): worker processes share one stderr,
        # and their lines must not interleave.
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
