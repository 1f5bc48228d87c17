"""The recorded Assistants streams, read the same way by every test that replays them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

PACKAGED = Path(__file__).resolve().parents[1] / "gateway" / "simulator" / "recordings"


@dataclass(frozen=True)
class RecordedStream:
    recording: str  # the file's stem, as `X-Simulator-Replay` names it
    path: str
    query: str
    request_body: dict[str, Any]
    pieces: tuple[str, ...]  # the body as recorded: list items, or (cassettes) one piece per event

    @property
    def body(self) -> bytes:
        return "".join(self.pieces).encode()


def recorded_streams(directory: Path = PACKAGED) -> list[RecordedStream]:
    found = []
    for path in sorted(directory.glob("*.json")):
        for entry in json.loads(path.read_text())["Entries"]:
            if isinstance(entry["ResponseBody"], list):
                url = urlsplit(entry["RequestUri"])
                found.append(
                    RecordedStream(path.stem, url.path, url.query, entry["RequestBody"], tuple(entry["ResponseBody"]))
                )
    for path in sorted(directory.glob("*.yaml")):
        for interaction in yaml.safe_load(path.read_text())["interactions"]:
            text = interaction["response"]["body"]["string"]
            if isinstance(text, str) and text.startswith("event:"):
                url = urlsplit(interaction["request"]["uri"])
                pieces = tuple(event + "\n\n" for event in text.split("\n\n")[:-1])
                found.append(
                    RecordedStream(path.stem, url.path, url.query, json.loads(interaction["request"]["body"]), pieces)
                )
    return found


def stream_params(directory: Path = PACKAGED) -> list[Any]:
    return [pytest.param(s, id=f"{s.recording}:{s.path.rsplit('/', 1)[-1]}") for s in recorded_streams(directory)]
