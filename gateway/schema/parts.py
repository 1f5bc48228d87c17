"""Building blocks of the Assistants run request bodies (messages, tools, tool resources, ...).

Transcribed from the official OpenAPI spec (schemas CreateMessageRequest, AssistantTools*,
FunctionObject, AssistantsApiToolChoiceOption, AssistantsApiResponseFormatOption,
TruncationObject, Metadata and the inline tool_resources objects), plus the limits the spec
only states in prose (metadata sizes, function-name pattern, chunk overlap, vector stores).

Conventions, so that `gateway.schema_errors` can turn any failure into an exact body path:
- every union is a callable-discriminator union whose members carry a `Tag`; a union of
  several JSON kinds (`"auto"` or an object, a string or an array) is tagged by JSON kind
  (`BY_JSON_KIND`), a union of objects by their `type` field (`BY_TYPE`);
- `Omittable[X]` is an optional field the spec does not allow to be null.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gateway.schema.errors import INVALID_TYPE

UNKNOWN_FIELDS = "unknown_fields"
"""Validation-context key; the value "pass" makes every model ignore keys it does not know."""


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_fields(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and (info.context or {}).get(UNKNOWN_FIELDS) == "pass":
            known = {field.alias or name for name, field in cls.model_fields.items()}
            return {key: value for key, value in data.items() if key in known}
        return data


def _reject_null(value: object) -> object:
    if value is None:
        raise PydanticCustomError(INVALID_TYPE, "null is not allowed here")
    return value


_T = TypeVar("_T")
# The field may be left out (then it reads as None) but an explicit null is a type error.
Omittable = Annotated[_T | None, BeforeValidator(_reject_null)]


_JSON_KINDS: dict[type, str] = {str: "string", list: "array", dict: "object"}


def _json_kind(value: object) -> str | None:
    return _JSON_KINDS.get(type(value))


def _type_field(value: object) -> str | None:
    tag = value.get("type") if isinstance(value, dict) else None
    return tag if isinstance(tag, str) else None


BY_JSON_KIND = Discriminator(_json_kind, custom_error_type=INVALID_TYPE, custom_error_message="wrong JSON type")
BY_TYPE = Discriminator(_type_field)

# "Set of 16 key-value pairs ... Keys are strings with a maximum length of 64 characters.
# Values are strings with a maximum length of 512 characters."
Metadata = (
    Annotated[
        dict[Annotated[str, StringConstraints(max_length=64)], Annotated[str, StringConstraints(max_length=512)]],
        Field(max_length=16),
    ]
    | None
)
# Function and response-format names: "a-z, A-Z, 0-9, or underscores and dashes, with a maximum length of 64".
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
ImageDetail = Literal["auto", "low", "high"]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


# --- tools -------------------------------------------------------------------------------


class CodeInterpreterTool(RequestModel):
    type: Literal["code_interpreter"]


class FileSearchRankingOptions(RequestModel):
    ranker: Omittable[Literal["auto", "default_2024_08_21"]] = None
    score_threshold: Annotated[float, Field(ge=0, le=1)]


class FileSearchSettings(RequestModel):
    max_num_results: Omittable[Annotated[int, Field(ge=1, le=50)]] = None
    ranking_options: Omittable[FileSearchRankingOptions] = None


class FileSearchTool(RequestModel):
    type: Literal["file_search"]
    file_search: Omittable[FileSearchSettings] = None


class FileSearchToolTypeOnly(RequestModel):
    type: Literal["file_search"]


class FunctionDefinition(RequestModel):
    name: Identifier
    description: Omittable[str] = None
    parameters: Omittable[dict[str, Any]] = None
    strict: bool | None = False


class FunctionTool(RequestModel):
    type: Literal["function"]
    function: FunctionDefinition


Tool = Annotated[
    Annotated[CodeInterpreterTool, Tag("code_interpreter")]
    | Annotated[FileSearchTool, Tag("file_search")]
    | Annotated[FunctionTool, Tag("function")],
    BY_TYPE,
]
Tools = Annotated[list[Tool], Field(max_length=20)]

# --- messages ----------------------------------------------------------------------------


class ImageFile(RequestModel):
    file_id: str
    detail: ImageDetail = "auto"


class ImageFilePart(RequestModel):
    type: Literal["image_file"]
    image_file: ImageFile


class ImageUrl(RequestModel):
    url: str  # format: uri; left to the upstream, which knows which schemes it fetches
    detail: ImageDetail = "auto"


class ImageUrlPart(RequestModel):
    type: Literal["image_url"]
    image_url: ImageUrl


class TextPart(RequestModel):
    type: Literal["text"]
    text: str


ContentPart = Annotated[
    Annotated[ImageFilePart, Tag("image_file")]
    | Annotated[ImageUrlPart, Tag("image_url")]
    | Annotated[TextPart, Tag("text")],
    BY_TYPE,
]
MessageContent = Annotated[
    Annotated[str, Tag("string")] | Annotated[list[ContentPart], Field(min_length=1), Tag("array")],
    BY_JSON_KIND,
]
AttachmentTool = Annotated[
    Annotated[CodeInterpreterTool, Tag("code_interpreter")] | Annotated[FileSearchToolTypeOnly, Tag("file_search")],
    BY_TYPE,
]


class Attachment(RequestModel):
    file_id: str
    tools: list[AttachmentTool]


class CreateMessageRequest(RequestModel):
    role: Literal["user", "assistant"]
    content: MessageContent
    attachments: list[Attachment] | None = None
    metadata: Metadata = None


# --- tool resources ----------------------------------------------------------------------


class CodeInterpreterResources(RequestModel):
    file_ids: Annotated[list[str], Field(max_length=20)] = Field(default_factory=list)


class AutoChunking(RequestModel):
    type: Literal["auto"]


class StaticChunkingSettings(RequestModel):
    max_chunk_size_tokens: Annotated[int, Field(ge=100, le=4096)]
    chunk_overlap_tokens: Annotated[int, Field(ge=0)]

    @field_validator("chunk_overlap_tokens")
    @classmethod
    def _at_most_half_the_chunk(cls, overlap: int, info: ValidationInfo) -> int:
        size = info.data.get("max_chunk_size_tokens")  # absent when it failed validation itself
        if size is not None and 2 * overlap > size:
            raise ValueError(f"must not exceed half of max_chunk_size_tokens ({size}), but got {overlap} instead.")
        return overlap


class StaticChunking(RequestModel):
    type: Literal["static"]
    static: StaticChunkingSettings


ChunkingStrategy = Annotated[
    Annotated[AutoChunking, Tag("auto")] | Annotated[StaticChunking, Tag("static")],
    BY_TYPE,
]


class VectorStoreHelper(RequestModel):
    file_ids: Omittable[Annotated[list[str], Field(max_length=100_000_000)]] = None
    chunking_strategy: Omittable[ChunkingStrategy] = None
    metadata: Metadata = None


class FileSearchResources(RequestModel):
    vector_store_ids: Omittable[Annotated[list[str], Field(max_length=1)]] = None


class ThreadFileSearchResources(FileSearchResources):
    """A thread may also create its vector store on the fly, instead of naming an existing one."""

    vector_stores: Omittable[Annotated[list[VectorStoreHelper], Field(max_length=1)]] = None

    @field_validator("vector_stores")
    @classmethod
    def _not_with_vector_store_ids(
        cls, stores: list[VectorStoreHelper], info: ValidationInfo
    ) -> list[VectorStoreHelper]:
        if info.data.get("vector_store_ids") is not None:
            raise ValueError("cannot be combined with vector_store_ids; a thread has at most one vector store.")
        return stores

    @model_validator(mode="after")
    def _one_of_the_two(self) -> ThreadFileSearchResources:
        # The spec's `oneOf`: a thread's file_search names its vector store or has one made, not neither.
        if self.vector_store_ids is None and self.vector_stores is None:
            raise ValueError("give vector_store_ids or vector_stores.")
        return self


class ToolResources(RequestModel):
    code_interpreter: Omittable[CodeInterpreterResources] = None
    file_search: Omittable[FileSearchResources] = None


class ThreadToolResources(ToolResources):
    file_search: Omittable[ThreadFileSearchResources] = None


class CreateThreadRequest(RequestModel):
    messages: Omittable[list[CreateMessageRequest]] = None
    tool_resources: ThreadToolResources | None = None
    metadata: Metadata = None


# --- run options -------------------------------------------------------------------------


class TruncationObject(RequestModel):
    type: Literal["auto", "last_messages"]
    last_messages: Annotated[int, Field(ge=1)] | None = None


class ToolChoiceFunctionName(RequestModel):
    name: str


class ToolChoiceFunction(RequestModel):
    type: Literal["function"]
    function: ToolChoiceFunctionName


class ToolChoiceBuiltin(RequestModel):
    type: Literal["code_interpreter", "file_search"]
    function: Omittable[ToolChoiceFunctionName] = None  # the spec allows it with any type


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("string")]
    | Annotated[
        Annotated[ToolChoiceFunction, Tag("function")]
        | Annotated[ToolChoiceBuiltin, Tag("code_interpreter")]
        | Annotated[ToolChoiceBuiltin, Tag("file_search")],
        BY_TYPE,
        Tag("object"),
    ],
    BY_JSON_KIND,
]


class TextFormat(RequestModel):
    type: Literal["text"]


class JsonObjectFormat(RequestModel):
    type: Literal["json_object"]


class JsonSchema(RequestModel):
    name: Identifier
    description: Omittable[str] = None
    schema_: Omittable[dict[str, Any]] = Field(default=None, alias="schema")
    strict: bool | None = False


class JsonSchemaFormat(RequestModel):
    type: Literal["json_schema"]
    json_schema: JsonSchema


ResponseFormat = Annotated[
    Annotated[Literal["auto"], Tag("string")]
    | Annotated[
        Annotated[TextFormat, Tag("text")]
        | Annotated[JsonObjectFormat, Tag("json_object")]
        | Annotated[JsonSchemaFormat, Tag("json_schema")],
        BY_TYPE,
        Tag("object"),
    ],
    BY_JSON_KIND,
]
