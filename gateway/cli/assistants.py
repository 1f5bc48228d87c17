"""`python -m gateway assistants import FILE`: old assistants → the config's `assistants:` section.

The Assistants API is gone, so a team's assistants exist only as exports (`GET /v1/assistants` saved
to a file, a list of them, or one). Each is checked like the config checks it and printed as YAML
under `assistants:`, keeping its id so apps that name it keep working; add `--tenant` to restrict
who may use them. Paste the output into the config (or append it), then reload.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from gateway.config.assistants import AssistantConfig

_KEPT = ("model", "name", "description", "instructions", "tools", "tool_resources", "temperature", "top_p",
         "response_format", "metadata")  # fmt: skip


def import_assistants(path: Path, tenants: list[str]) -> tuple[str, list[str]]:
    """The YAML section, and every problem found (by assistant id and field)."""
    try:
        exported = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        return "", [f"{path}: {exc}"]
    items = exported.get("data") if isinstance(exported, dict) and exported.get("object") == "list" else exported
    items = items if isinstance(items, list) else [items]
    section: dict[str, Any] = {}
    problems: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            problems.append(f"[{index}]: an assistant object with an id was expected")
            continue
        fields = {key: item[key] for key in _KEPT if item.get(key) is not None}
        try:
            assistant = AssistantConfig.model_validate({**fields, **({"tenants": tenants} if tenants else {})})
        except ValidationError as exc:
            problems += [f"{item['id']}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            continue
        section[item["id"]] = assistant.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump({"assistants": section}, sort_keys=False, allow_unicode=True), problems


def run(path: str, tenants: list[str]) -> int:
    text, problems = import_assistants(Path(path), tenants)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    sys.stdout.write(text)
    return 0
