"""The one spelling of a path: what each other spelling becomes, or that it has none."""

from __future__ import annotations

import pytest

from gateway.http.paths import canonical_path

ROUTES = ["/v1/threads/runs", "/v1/threads/thread_1/runs", "/v1/threads/thread_1/runs/run_2/submit_tool_outputs",
          "/v1/threads/thread_1/messages", "/v1/assistants/asst_1", "/v1/files/file-abc/content", "/healthz"]  # fmt: skip


def spellings(path: str) -> list[str]:
    """Other spellings of `path` an HTTP client or an upstream could read as the same path."""
    head, _, last = path.rpartition("/")
    encoded_last = "".join(f"%{ord(c):02X}" for c in last[:2]) + last[2:]
    return [path + "/", path + "%2F", path + ";", path + ";jsessionid=1", head + "%2F" + last, head + "//" + last,
            head + "/./" + last, head + "/" + encoded_last, path.replace("/", "//", 1), path + "/."]  # fmt: skip


@pytest.mark.parametrize("path", ROUTES)
def test_every_other_spelling_of_a_route_names_it(path: str) -> None:
    assert canonical_path(path) == path
    for spelling in spellings(path):
        assert canonical_path(spelling) == path, spelling


@pytest.mark.parametrize("raw", ["/v1/threads/../runs", "/v1/threads/runs/..", "/v1/threads%252Fruns", "/v1/threads/%FF",
                                 "/v1/threads/%C3%A9", "/v1/threads/a b", "/v1/threads/%00", "/v1/threads/a%0Ab"])  # fmt: skip
def test_what_has_no_canonical_spelling(raw: str) -> None:
    assert canonical_path(raw) is None
