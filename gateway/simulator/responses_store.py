"""What the simulated Responses + Conversations API remembers: conversations with their items, and
stored responses with their input items (and, for background ones, the statuses still to show).

Kept apart from the endpoints so `state.py` can hold it without importing them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TypeVar

from .objects import JsonObject
from .responses import SimulatorError
from .sse import Frame

_T = TypeVar("_T")


@dataclass
class ConversationRecord:
    obj: JsonObject
    items: list[JsonObject] = field(default_factory=list)  # oldest first, as the API appends them


@dataclass
class ResponseRecord:
    obj: JsonObject  # the response as it ends (or as it is now, for a background one)
    input_items: list[JsonObject]
    # A background response's later selves: each retrieve shows the next (in_progress, then the end).
    stages: deque[JsonObject] = field(default_factory=deque)
    # Where a background response's output goes once it has finished.
    conversation: ConversationRecord | None = None
    # Its events, for `GET /v1/responses/{id}?stream=true` (a background stream picked up again).
    frames: list[Frame] = field(default_factory=list)


@dataclass
class ResponsesStore:
    # Beyond this many conversations / responses the oldest is forgotten (a long benchmark).
    retain: int = 10_000
    conversations: dict[str, ConversationRecord] = field(default_factory=dict)
    responses: dict[str, ResponseRecord] = field(default_factory=dict)

    def conversation(self, conversation_id: str) -> ConversationRecord:
        if conversation_id not in self.conversations:
            raise SimulatorError(404, f"Conversation with id '{conversation_id}' not found.")
        return self.conversations[conversation_id]

    def response(self, response_id: str) -> ResponseRecord:
        if response_id not in self.responses:
            raise SimulatorError(404, f"Response with id '{response_id}' not found.")
        return self.responses[response_id]

    def item(self, conversation: ConversationRecord, item_id: str) -> JsonObject:
        found = next((item for item in conversation.items if item.get("id") == item_id), None)
        if found is None:
            raise SimulatorError(404, f"Item with id '{item_id}' not found.")
        return found

    def add_conversation(self, record: ConversationRecord) -> None:
        self.conversations[record.obj["id"]] = record
        _bound(self.conversations, self.retain)

    def add_response(self, record: ResponseRecord) -> None:
        self.responses[record.obj["id"]] = record
        _bound(self.responses, self.retain)


def _bound(table: dict[str, _T], retain: int) -> None:
    while len(table) > retain:
        del table[next(iter(table))]
