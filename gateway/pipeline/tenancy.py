"""Which objects a call names, creates or lists, for the ownership checks (pure: paths and bodies only).

A tenant owns what the gateway saw it create: assistants, files, vector stores and threads, claimed
from the creating call's answer. Everything else a tenant reaches hangs off one of those and is
reached through it: a thread's messages, runs and steps by the thread's path, a vector store's files
and batches by the store's path, a file's content by the file's path. So a call is checked on the
first-level object its path names and on every object its JSON body refers to; the upstream then
keeps the sub-objects inside their parent (another thread's run is its own 404 there).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Kind:
    collection: str  # its path below the API root: `/assistants`
    name: str  # as the client's 404 names it: "No assistant found with id '…'."
    object: str  # the `object` field of one, in the answer that creates it


ASSISTANT = Kind("assistants", "assistant", "assistant")
FILE = Kind("files", "file", "file")
VECTOR_STORE = Kind("vector_stores", "vector store", "vector_store")
THREAD = Kind("threads", "thread", "thread")
KINDS = {kind.collection: kind for kind in (ASSISTANT, FILE, VECTOR_STORE, THREAD)}
LISTED = (ASSISTANT, FILE, VECTOR_STORE)  # the lists at a collection's root (threads have none)

# Body keys whose values name objects; everywhere in a body but under `metadata` (the caller's own
# free text). Attachments, image_file parts, tool_resources and vector store helpers all use these.
REFERENCES = {"assistant_id": ASSISTANT, "file_id": FILE, "file_ids": FILE, "vector_store_ids": VECTOR_STORE}
_NOT_IDS = ("runs",)  # `/threads/runs` is create-thread-and-run, not a thread named "runs"


@dataclass(frozen=True, slots=True)
class Ref:
    kind: Kind
    object_id: str


def named_in_path(api_path: str) -> Ref | None:
    """The first-level object a path names: `/threads/{id}/messages` → the thread."""
    parts = api_path.split("/", 3)
    if len(parts) < 3 or parts[2] in ("", *_NOT_IDS):
        return None
    kind = KINDS.get(parts[1])
    return None if kind is None else Ref(kind, parts[2])


def collection_of(api_path: str) -> Kind | None:
    """The kind a path is the collection or one object of: `/assistants`, `/assistants/{id}`."""
    parts = api_path.split("/")
    return KINDS.get(parts[1]) if len(parts) in (2, 3) else None


def created_by(method: str, api_path: str) -> Kind | None:
    """The kind of object a call creates: a POST to its collection's root."""
    return KINDS.get(api_path[1:]) if method == "POST" else None


def listed_by(method: str, api_path: str) -> Kind | None:
    """The kind a call lists: a GET of its collection's root."""
    kind = KINDS.get(api_path[1:]) if method == "GET" else None
    return kind if kind in LISTED else None


def referenced_in(data: Any) -> list[Ref]:
    """Every object a JSON body refers to, each once, in the order met."""
    return list(dict.fromkeys(_walk(data)))


def _walk(data: Any) -> Iterator[Ref]:
    if isinstance(data, list):
        for item in data:
            yield from _walk(item)
    elif isinstance(data, dict):
        for key, value in data.items():
            if key == "metadata":
                continue
            kind = REFERENCES.get(key)
            if kind is None:
                yield from _walk(value)
            elif isinstance(value, str):
                yield Ref(kind, value)
            elif isinstance(value, list):
                yield from (Ref(kind, item) for item in value if isinstance(item, str))
