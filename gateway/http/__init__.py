"""HTTP plumbing that knows nothing of tenants or policy: the upstream client, the relay, SSE, body bounds."""
