"""The `assistants:` section: platform-defined assistants, served at `/v1/assistants/{id}` when the
upstream speaks the Responses API (`upstream.protocol: responses`), whose definition goes inline
with every response of their runs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_TOOL_TYPES = ("function", "file_search", "code_interpreter")


class AssistantConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=512)
    instructions: str | None = Field(None, max_length=256_000)
    tools: tuple[dict[str, Any], ...] = Field((), max_length=128, description="Assistants tool shapes")
    tool_resources: dict[str, Any] = Field(default_factory=dict)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    response_format: Literal["auto"] | dict[str, Any] = "auto"
    metadata: dict[str, str] = Field(default_factory=dict, max_length=16)
    tenants: tuple[str, ...] | None = Field(None, description="who may use it; absent: every tenant")

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, tools: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        for index, tool in enumerate(tools):
            if tool.get("type") not in _TOOL_TYPES:
                raise ValueError(f"tools[{index}].type: one of {', '.join(_TOOL_TYPES)}")
            if tool["type"] == "function" and not (tool.get("function") or {}).get("name"):
                raise ValueError(f"tools[{index}].function.name: required")
        return tools

    def open_to(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants

    def as_json(self, assistant_id: str, created_at: int) -> dict[str, Any]:
        """The assistant object as `GET /v1/assistants/{id}` answers it."""
        return {
            "id": assistant_id, "object": "assistant", "created_at": created_at, "name": self.name,
            "description": self.description, "model": self.model, "instructions": self.instructions,
            "tools": list(self.tools), "tool_resources": self.tool_resources, "metadata": self.metadata,
            "top_p": self.top_p, "temperature": self.temperature, "response_format": self.response_format,
        }  # fmt: skip
