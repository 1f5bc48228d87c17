"""The observers: Prometheus metrics, OpenTelemetry traces, the audit log, the debug run log.

They subscribe to the `Recorder`'s events (`gateway/domain.py`); they never decide or block, and the
core never imports them (import-linter keeps it so)."""
