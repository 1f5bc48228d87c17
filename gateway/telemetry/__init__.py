"""Observers of the gateway: metrics (and, as they land, traces and the audit log)."""
