"""The gateway's own operations: admin API, health, OpenAPI document, hot reload, the reconciler."""
