"""The `audit:` section: where the hash-chained audit log goes and what it keeps."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.config.secrets import EnvSecret


class CheckpointConfig(BaseModel):
    """Signed checkpoints of where the chain stands, written to a second file: what verify needs to
    see records cut from the end or the start of the log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="a second file (best on another disk or host) the checkpoints are appended to")
    interval_s: float = Field(60.0, gt=0, description="how often the chain's head is checkpointed while it moves")


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
    mac_key: EnvSecret = Field(
        None,
        description="${VAR}: each record's hash becomes an HMAC-SHA256 with this key, so no one without it can re-chain",
    )
    checkpoints: CheckpointConfig | None = Field(
        None, description="signed checkpoints of the chain's head (needs mac_key)"
    )
    on_failure: Literal["fail_open", "fail_closed"] = Field(
        "fail_open",
        description="the sink cannot write: run calls go on unaudited (the loss is noted in the chain), or get 503",
    )

    @model_validator(mode="after")
    def _path_fits_sink(self) -> AuditConfig:
        if self.sink == "file" and not self.path:
            raise ValueError("path: required when sink is 'file'")
        if self.sink == "stdout" and self.path is not None:
            raise ValueError("path: only for sink 'file'")
        if self.checkpoints is not None and self.mac_key is None:
            raise ValueError("checkpoints: need mac_key (an unsigned checkpoint is as easy to rewrite as the log)")
        return self
