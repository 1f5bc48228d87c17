"""The `policies:` section: per-tenant rules, as frozen pydantic models (see `gateway.policy`).

Every section and every rule is optional; an absent one restricts nothing. Globs (models, function
names, image hosts, shadow rules) are fnmatch patterns, compiled once here at load time, so the
decision on each request only runs one precompiled regex per list. `RULE_IDS` is the one place
the stable rule ids are listed; `gateway.policy` documents what each one judges.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    StringConstraints,
    model_validator,
)
from pydantic_core import core_schema

RULE_IDS: tuple[str, ...] = (
    "models.allow",
    "models.deny",
    "assistants.allow",
    "assistants.deny",
    "tools.allowed_types",
    "tools.functions",
    "tools.max_tools",
    "tools.max_file_search_results",
    "tools.tool_choice_required",
    "tokens.max_prompt_tokens",
    "tokens.max_completion_tokens",
    "sampling.temperature",
    "sampling.top_p",
    "sampling.response_formats",
    "content.max_messages",
    "content.max_text_chars",
    "content.images",
    "content.image_url_hosts",
    "content.max_attachments",
    "content.max_code_interpreter_files",
    "content.vector_store_helper",
    "content.instructions_override",
    "metadata.required",
    "metadata.allowed_values",
)
_API_MIN_TOKENS = 256  # the API refuses max_*_tokens below this, so a lower cap could never be met

NonEmpty = Annotated[str, StringConstraints(min_length=1)]


def _compile(patterns: Iterable[str]) -> re.Pattern[str]:
    # One alternation for the whole list: a single regex call per value instead of one per glob.
    # fnmatch.translate (not fnmatch.fnmatch) so matching is case-sensitive on every platform.
    return re.compile("|".join(fnmatch.translate(p) for p in patterns) or r"(?!)")


@dataclass(frozen=True, slots=True)
class Globs:
    """fnmatch globs, compiled into one regex when the config is validated. Empty: matches nothing."""

    patterns: tuple[str, ...]
    _regex: re.Pattern[str] = field(compare=False, repr=False)

    @classmethod
    def of(cls, patterns: Iterable[str]) -> Globs:
        patterns = tuple(patterns)
        return cls(patterns, _compile(patterns))

    def matches(self, value: str) -> bool:
        return self._regex.match(value) is not None

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # Validated as a list of non-empty strings (so errors name the entry's index), written back as one.
        return core_schema.no_info_after_validator_function(
            cls.of,
            handler.generate_schema(tuple[NonEmpty, ...]),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda globs: list(globs.patterns)),
        )


def _lowercase(value: object) -> object:
    # Host names compare case-insensitively; urlsplit() already lowercases the request's side.
    if isinstance(value, list | tuple):
        return [item.lower() if isinstance(item, str) else item for item in value]
    return value


HostGlobs = Annotated[Globs, BeforeValidator(_lowercase)]


def _known_rule_glob(pattern: str) -> str:
    if not any(ch in pattern for ch in "*?["):
        if pattern not in RULE_IDS:
            raise ValueError(f"unknown rule id {pattern!r} ({_rule_hint(pattern)})")
    elif not any(fnmatch.fnmatchcase(rule, pattern) for rule in RULE_IDS):
        raise ValueError(f"{pattern!r} matches no rule id ({_rule_hint(pattern)})")
    return pattern


def _rule_hint(pattern: str) -> str:
    # The ids of the family the pattern names, or the families: short enough to read in one line.
    family = pattern.split(".", 1)[0]
    siblings = [rule for rule in RULE_IDS if rule.startswith(family + ".")]
    if siblings:
        return "known: " + ", ".join(siblings)
    return "rule families: " + ", ".join(dict.fromkeys(rule.split(".", 1)[0] for rule in RULE_IDS))


RuleGlob = Annotated[str, AfterValidator(_known_rule_glob)]


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRules(_Rules):
    allow: Globs | None = Field(None, description="model globs allowed; absent: any model")
    deny: Globs = Field(Globs.of(()), description="model globs refused, even if `allow` matches")


class AssistantRules(_Rules):
    allow: frozenset[NonEmpty] | None = Field(None, description="exact assistant ids allowed; absent: any")
    deny: frozenset[NonEmpty] = Field(frozenset(), description="exact assistant ids refused")


ToolType = Literal["code_interpreter", "file_search", "function"]


class ToolRules(_Rules):
    allowed_types: frozenset[ToolType] | None = Field(None, description="tool types a request may name; absent: any")
    functions: Globs | None = Field(None, description="function-name globs allowed; absent: any name")
    max_tools: int | None = Field(None, ge=0, description="most entries in the request's `tools`")
    max_file_search_results: int | None = Field(
        None, ge=1, le=50, description="ceiling for tools[].file_search.max_num_results (when sent)"
    )
    allow_tool_choice_required: bool = Field(True, description="false: tool_choice 'required' is refused")


class TokenRule(_Rules):
    max: int = Field(ge=_API_MIN_TOKENS, description="largest value a run may ask for")
    action: Literal["reject", "clamp"] = Field("reject", description="over `max`: refuse, or lower it to `max`")
    default: int | None = Field(
        None, ge=_API_MIN_TOKENS, description="injected when the client omits it; absent: `max` is injected"
    )

    @model_validator(mode="after")
    def _default_within_max(self) -> TokenRule:
        if self.default is not None and self.default > self.max:
            raise ValueError(f"default ({self.default}) must not exceed max ({self.max})")
        return self

    @property
    def injected(self) -> int:
        """What an omitted (or null) value becomes: a configured cap is never left unbounded."""
        return self.max if self.default is None else self.default


class TokenRules(_Rules):
    max_prompt_tokens: TokenRule | None = None
    max_completion_tokens: TokenRule | None = None


class Range(_Rules):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self

    def describe(self) -> str:
        low = "-inf" if self.min is None else f"{self.min:g}"
        high = "inf" if self.max is None else f"{self.max:g}"
        return f"[{low}, {high}]"


ResponseFormatKind = Literal["auto", "text", "json_object", "json_schema"]


class SamplingRules(_Rules):
    temperature: Range | None = Field(None, description="allowed range of a sent temperature")
    top_p: Range | None = Field(None, description="allowed range of a sent top_p")
    response_formats: frozenset[ResponseFormatKind] | None = Field(
        None, description="'auto' or a response_format object's type; absent: any"
    )


class VectorStoreHelperRules(_Rules):
    allowed: bool = Field(True, description="false: thread.tool_resources.file_search.vector_stores is refused")
    max_files: int | None = Field(None, ge=0, description="most file_ids in one helper vector store")


class ContentRules(_Rules):
    max_messages: int | None = Field(None, ge=0, description="thread.messages / additional_messages count")
    max_text_chars: int | None = Field(None, gt=0, description="characters of text sent, summed over the request")
    allow_images: bool = Field(True, description="false: image_url and image_file parts are refused")
    image_url_hosts: HostGlobs | None = Field(None, description="host globs image_url may point at; absent: any")
    max_attachments: int | None = Field(None, ge=0, description="message attachments, summed over the request")
    max_code_interpreter_files: int | None = Field(
        None, ge=0, description="files given to code_interpreter (tool_resources and attachments)"
    )
    vector_store_helper: VectorStoreHelperRules | None = None
    allow_instructions_override: bool = Field(True, description="false: sending `instructions` is refused")


class MetadataRules(_Rules):
    required: frozenset[NonEmpty] = Field(frozenset(), description="keys the run's metadata must carry")
    allowed_values: dict[NonEmpty, frozenset[str]] = Field(
        default_factory=dict, description="key → the values it may take, when present"
    )

    @model_validator(mode="after")
    def _required_keys_can_be_met(self) -> MetadataRules:
        impossible = sorted(key for key in self.required if self.allowed_values.get(key) == frozenset())
        if impossible:
            raise ValueError(f"required keys {impossible} have no allowed value, so no run could pass")
        return self


class PolicyConfig(_Rules):
    shadow: bool = Field(False, description="the whole policy only records would-deny; nothing is refused")
    shadow_rules: tuple[RuleGlob, ...] = Field((), description="rule-id globs that only record would-deny")
    models: ModelRules | None = None
    assistants: AssistantRules | None = None
    tools: ToolRules | None = None
    tokens: TokenRules | None = None
    sampling: SamplingRules | None = None
    content: ContentRules | None = None
    metadata: MetadataRules | None = None

    # Resolved once: rule id → shadowed? (a set lookup per violation, no glob matching per request).
    _shadowed: frozenset[str] = PrivateAttr(frozenset())

    def model_post_init(self, context: Any, /) -> None:
        if self.shadow:
            self._shadowed = frozenset(RULE_IDS)
        else:
            self._shadowed = frozenset(r for r in RULE_IDS if any(fnmatch.fnmatchcase(r, g) for g in self.shadow_rules))

    def is_shadowed(self, rule: str) -> bool:
        return rule in self._shadowed

    def judged_rules(self) -> tuple[str, ...]:
        """The rule ids this policy can find violated: those of each family it configures."""
        families = {name for name in ("models", "assistants", "tools", "tokens", "sampling", "content", "metadata")
                    if getattr(self, name) is not None}  # fmt: skip
        return tuple(rule for rule in RULE_IDS if rule.split(".", 1)[0] in families)

    @property
    def has_model_rules(self) -> bool:
        models = self.models
        return models is not None and (models.allow is not None or bool(models.deny.patterns))
