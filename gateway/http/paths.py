"""The one spelling of a URL path the gateway serves. Pure.

Checks (routing, ownership, policy) and forwarding must read the same path, or another spelling of
a run endpoint (`/v1/threads%2Fruns`, `/v1/threads/runs/`, `…/runs;x`) would reach the upstream, which
decodes it to the endpoint, without the checks. So a path is served only in its canonical spelling.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

# What a path segment of the API may hold: ids and names are letters, digits, `_`, `-`, `.`, `~`.
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


def canonical_path(raw_path: str) -> str | None:
    """`raw_path` percent-decoded (an encoded `/` separates too), `;params` dropped, empty and `.`
    segments gone, no trailing slash; None when it has no canonical spelling (`..`, bytes no API path
    holds, anything still encoded after one decoding)."""
    try:
        decoded = unquote(raw_path, errors="strict")
    except UnicodeDecodeError:
        return None
    segments = []
    for part in decoded.split("/"):
        part = part.split(";", 1)[0]
        if part in ("", "."):
            continue
        if part == ".." or not _SEGMENT.fullmatch(part):
            return None
        segments.append(part)
    return "/" + "/".join(segments)
