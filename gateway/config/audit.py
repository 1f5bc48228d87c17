"""The `audit:` section: where the hash-chained audit log goes and what it keeps."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AuditConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    sink: Literal["stdout", "file"] = "stdout"
    path: str | None = Field(None, description="sink: file only; rotated files are path.1 (newest) … path.N")
    max_bytes: int = Field(100 * 1024 * 1024, ge=0, description="rotate before a file would pass this; 0: never")
    backups: int = Field(10, ge=1, description="rotated files kept; older ones are deleted")
    content: Literal["none", "hash", "full"] = Field(
        "none", description="message texts, instructions, tool outputs: left out, as sha256 digests, or as is"
    )
    queue_size: int = Field(10_000, ge=2, description="records held before new run calls wait at admission")

    @model_validator(mode="after")
    def _path_fits_sink(self) -> AuditConfig:
        if self.sink == "file" and not self.path:
            raise ValueError("path: required when sink is 'file'")
        if self.sink == "stdout" and self.path is not None:
            raise ValueError("path: only for sink 'file'")
        return self
