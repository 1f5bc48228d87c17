"""The rule families of `gateway.policy`, one small function each, and the findings they fill.

Every function reads the validated request model (never the raw dict: the model already knows
what is a tool, a part, a URL) and reports to a `Findings`, which routes each violation to
enforced or shadowed and owns the copy-on-write body. None of them stops at the first problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.config.policy import (
    AssistantRules,
    ContentRules,
    Globs,
    MetadataRules,
    ModelRules,
    PolicyConfig,
    Range,
    SamplingRules,
    TokenRules,
    ToolRules,
)
from gateway.schema.parts import (
    CreateMessageRequest,
    FileSearchTool,
    FunctionTool,
    ImageUrlPart,
    TextPart,
    Tool,
    ToolChoiceFunction,
)
from gateway.schema.requests import CreateRunRequest, CreateThreadAndRunRequest, SubmitToolOutputsRequest

RunOptions = CreateThreadAndRunRequest | CreateRunRequest
Messages = tuple[str, list[CreateMessageRequest]]  # (body path of the list, the messages)


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str  # one of RULE_IDS
    param: str | None  # dotted path in the body; None when the value did not come from the body
    message: str


class Findings:
    """Violations as they are found, split by shadow mode, and the body with any changes."""

    __slots__ = ("_policy", "_source", "body", "modified", "shadowed", "violations")

    def __init__(self, policy: PolicyConfig, body: dict[str, Any]) -> None:
        self._policy = policy
        self._source = body
        self.body = body
        self.violations: list[Violation] = []
        self.shadowed: list[Violation] = []
        self.modified: list[str] = []

    def add(self, rule: str, param: str | None, message: str) -> None:
        target = self.shadowed if self._policy.is_shadowed(rule) else self.violations
        target.append(Violation(rule, param, message))

    def shadows(self, rule: str) -> bool:
        return self._policy.is_shadowed(rule)

    def set(self, param: str, value: object) -> None:
        # Copy-on-write, and only the top level: the nested values are shared, never changed.
        if self.body is self._source:
            self.body = dict(self._source)
        self.body[param] = value
        if param not in self.modified:
            self.modified.append(param)


def messages_of(request: RunOptions) -> Messages:
    if isinstance(request, CreateRunRequest):
        return "additional_messages", request.additional_messages or []
    thread = request.thread
    return "thread.messages", (thread.messages or []) if thread is not None else []


def _sent(request: RunOptions, name: str) -> Any:
    # The models fill in spec defaults (temperature 1.0, ...): only what the client wrote counts.
    return getattr(request, name) if name in request.model_fields_set else None


# --- models and assistants ------------------------------------------------------------------


def judge_models(model: str | None, from_body: bool, rules: ModelRules, f: Findings) -> None:
    param = "model" if from_body else None
    if model is None:  # fail closed: a rule we cannot evaluate refuses
        for rule, configured in (("models.allow", rules.allow is not None), ("models.deny", bool(rules.deny.patterns))):
            if configured:
                f.add(rule, None, "the model is unknown (not sent, and the assistant's model could not be determined)")
        return
    whose = "model" if from_body else "the assistant's model"
    if rules.deny.matches(model):
        f.add("models.deny", param, f"{whose} {model!r} is denied")
    if rules.allow is not None and not rules.allow.matches(model):
        f.add("models.allow", param, f"{whose} {model!r} is not allowed")


def judge_assistants(assistant_id: str, rules: AssistantRules, f: Findings) -> None:
    if assistant_id in rules.deny:
        f.add("assistants.deny", "assistant_id", f"assistant {assistant_id!r} is denied")
    if rules.allow is not None and assistant_id not in rules.allow:
        f.add("assistants.allow", "assistant_id", f"assistant {assistant_id!r} is not allowed")


# --- tools ----------------------------------------------------------------------------------


def judge_tools(
    request: RunOptions, messages: Messages, rules: ToolRules, f: Findings, inherited: Sequence[Tool] = ()
) -> None:
    """The tools the run will have: its own `tools`, or (`inherited`) the assistant's when it sends
    none; an inherited tool's violation names `assistant_id`, the choice that brought it."""
    types, functions = rules.allowed_types, rules.functions
    own = request.tools is not None
    tools, whose = (request.tools or [], "") if own else (inherited, "the assistant's ")
    at: Callable[[str], str] = (lambda path: path) if own else (lambda _path: "assistant_id")
    if rules.max_tools is not None and len(tools) > rules.max_tools:
        count = f"{len(tools)} tools sent" if own else f"the assistant has {len(tools)} tools"
        f.add("tools.max_tools", at("tools"), f"{count}, at most {rules.max_tools} allowed")
    for i, tool in enumerate(tools):
        if types is not None and tool.type not in types:
            f.add("tools.allowed_types", at(f"tools[{i}].type"), f"{whose}tool type {tool.type!r} is not allowed")
        if isinstance(tool, FunctionTool):
            _judge_function(tool.function.name, at(f"tools[{i}].function.name"), functions, f)
        elif isinstance(tool, FileSearchTool) and rules.max_file_search_results is not None:
            wanted = tool.file_search.max_num_results if tool.file_search is not None else None
            if wanted is not None and wanted > rules.max_file_search_results:
                f.add(
                    "tools.max_file_search_results",
                    at(f"tools[{i}].file_search.max_num_results"),
                    f"file_search max_num_results {wanted} exceeds the ceiling of {rules.max_file_search_results}",
                )
    if types is not None:  # attachments name tools too, and each one enables it for that file
        prefix, listed = messages
        for m, message in enumerate(listed):
            for a, attachment in enumerate(message.attachments or []):
                for t, attached in enumerate(attachment.tools):
                    if attached.type not in types:
                        param = f"{prefix}[{m}].attachments[{a}].tools[{t}].type"
                        f.add("tools.allowed_types", param, f"tool type {attached.type!r} is not allowed")
    _judge_tool_choice(request, rules, f)


def _judge_tool_choice(request: RunOptions, rules: ToolRules, f: Findings) -> None:
    choice = request.tool_choice
    if choice is None:
        return
    if isinstance(choice, str):  # "none" and "auto" leave the choice to the model: nothing to judge
        if choice == "required" and not rules.allow_tool_choice_required:
            f.add("tools.tool_choice_required", "tool_choice", "tool_choice 'required' is not allowed")
        return
    if rules.allowed_types is not None and choice.type not in rules.allowed_types:
        f.add("tools.allowed_types", "tool_choice.type", f"tool type {choice.type!r} is not allowed")
    if isinstance(choice, ToolChoiceFunction):  # forcing a function the policy would refuse in `tools`
        _judge_function(choice.function.name, "tool_choice.function.name", rules.functions, f)


def _judge_function(name: str, param: str, allowed: Globs | None, f: Findings) -> None:
    if allowed is not None and not allowed.matches(name):
        f.add("tools.functions", param, f"function {name!r} is not allowed")


# --- tokens and sampling --------------------------------------------------------------------


def judge_tokens(request: RunOptions, rules: TokenRules, f: Findings) -> None:
    for name, rule in (
        ("max_prompt_tokens", rules.max_prompt_tokens),
        ("max_completion_tokens", rules.max_completion_tokens),
    ):
        if rule is None:
            continue
        value: int | None = getattr(request, name)
        rule_id = f"tokens.{name}"
        if value is None:  # omitted, or null (which the API reads as omitted): never leave a cap unbounded
            f.set(name, rule.injected)
        elif value > rule.max:
            message = f"{name} {value} exceeds the maximum of {rule.max}"
            if rule.action == "reject":
                f.add(rule_id, name, message)
            elif f.shadows(rule_id):  # a shadowed clamp is only recorded; the body goes as sent
                f.add(rule_id, name, f"{message} (would be clamped to {rule.max})")
            else:
                f.set(name, rule.max)


def judge_sampling(request: RunOptions, rules: SamplingRules, f: Findings) -> None:
    for name, allowed in (("temperature", rules.temperature), ("top_p", rules.top_p)):
        value: float | None = _sent(request, name)
        if allowed is not None and value is not None and not _within(value, allowed):
            f.add(f"sampling.{name}", name, f"{name} {value:g} is outside the allowed range {allowed.describe()}")
    response_format = _sent(request, "response_format")
    if rules.response_formats is not None and response_format is not None:
        is_string = isinstance(response_format, str)
        kind: str = response_format if is_string else response_format.type
        if kind not in rules.response_formats:
            param = "response_format" if is_string else "response_format.type"
            f.add("sampling.response_formats", param, f"response_format {kind!r} is not allowed")


def _within(value: float, allowed: Range) -> bool:
    return (allowed.min is None or value >= allowed.min) and (allowed.max is None or value <= allowed.max)


# --- content --------------------------------------------------------------------------------


def judge_content(request: RunOptions, messages: Messages, rules: ContentRules, f: Findings) -> None:
    prefix, listed = messages
    if rules.max_messages is not None and len(listed) > rules.max_messages:
        f.add("content.max_messages", prefix, f"{len(listed)} messages sent, at most {rules.max_messages} allowed")
    if rules.max_text_chars is not None:
        _judge_text(request, messages, rules.max_text_chars, f)
    if not rules.allow_images or rules.image_url_hosts is not None:
        _judge_images(messages, rules, f)
    if rules.max_attachments is not None:
        count = sum(len(message.attachments or ()) for message in listed)
        if count > rules.max_attachments:  # paths are only built for a request that is over
            found = [
                f"{prefix}[{m}].attachments[{a}]"
                for m, msg in enumerate(listed)
                for a in range(len(msg.attachments or ()))
            ]
            message = f"{count} attachments sent, at most {rules.max_attachments} allowed"
            f.add("content.max_attachments", found[rules.max_attachments], message)
    if rules.max_code_interpreter_files is not None:
        found = list(_code_interpreter_files(request, messages))
        if len(found) > rules.max_code_interpreter_files:
            message = f"{len(found)} code_interpreter files sent, at most {rules.max_code_interpreter_files} allowed"
            f.add("content.max_code_interpreter_files", found[rules.max_code_interpreter_files], message)
    if rules.vector_store_helper is not None and isinstance(request, CreateThreadAndRunRequest):
        _judge_vector_store_helper(request, rules, f)
    if not rules.allow_instructions_override and request.instructions is not None:  # null: the assistant's own
        f.add("content.instructions_override", "instructions", "overriding the assistant's instructions is not allowed")


def judge_tool_outputs(request: SubmitToolOutputsRequest, max_chars: int, f: Findings) -> None:
    outputs = request.tool_outputs
    total = sum(len(o.output or "") for o in outputs)
    if total > max_chars:
        texts = ((len(o.output or ""), f"tool_outputs[{i}].output") for i, o in enumerate(outputs))
        _report_text(texts, total, max_chars, f)


def _judge_text(request: RunOptions, messages: Messages, limit: int, f: Findings) -> None:
    # Two passes so the common case (under the limit) only sums lengths and never builds a path.
    total = sum(length for length, _ in _texts(request, messages, with_paths=False))
    if total > limit:
        _report_text(_texts(request, messages, with_paths=True), total, limit, f)


def _report_text(texts: Iterable[tuple[int, str]], total: int, limit: int, f: Findings) -> None:
    running = 0
    for length, param in texts:  # param: the text that pushed the total over, the one to trim
        running += length
        if running > limit:
            f.add("content.max_text_chars", param, f"text totals {total} characters, at most {limit} allowed")
            return


def _texts(request: RunOptions, messages: Messages, *, with_paths: bool) -> Iterator[tuple[int, str]]:
    # `instructions` counts too: it is text the model reads, whether or not an override is allowed.
    if request.instructions:
        yield len(request.instructions), "instructions"
    if isinstance(request, CreateRunRequest) and request.additional_instructions:
        yield len(request.additional_instructions), "additional_instructions"
    prefix, listed = messages
    for m, message in enumerate(listed):
        if isinstance(message.content, str):
            yield len(message.content), f"{prefix}[{m}].content" if with_paths else ""
            continue
        for p, part in enumerate(message.content):
            if isinstance(part, TextPart):
                yield len(part.text), f"{prefix}[{m}].content[{p}].text" if with_paths else ""


def _judge_images(messages: Messages, rules: ContentRules, f: Findings) -> None:
    prefix, listed = messages
    hosts = rules.image_url_hosts
    for m, message in enumerate(listed):
        if isinstance(message.content, str):
            continue
        for p, part in enumerate(message.content):
            if isinstance(part, TextPart):
                continue
            where = f"{prefix}[{m}].content[{p}]"
            if not rules.allow_images:
                f.add("content.images", f"{where}.{part.type}", f"image parts are not allowed ({part.type})")
            if isinstance(part, ImageUrlPart) and hosts is not None:
                host = image_host(part.image_url.url)
                if host is None:
                    message_ = "image URL has no host (only http(s) URLs on an allowed host are accepted)"
                    f.add("content.image_url_hosts", f"{where}.image_url.url", message_)
                elif not hosts.matches(host):
                    f.add("content.image_url_hosts", f"{where}.image_url.url", f"image host {host!r} is not allowed")


def image_host(url: str) -> str | None:
    """The lowercased host of an http(s) URL, or None when there is none we can trust.

    Fails closed on anything parsers disagree about (a backslash or control character in the
    URL, an unparsable authority), so the host judged is the host the upstream fetches.
    """
    if any(ch <= " " or ch == "\\" for ch in url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return host


def _code_interpreter_files(request: RunOptions, messages: Messages) -> Iterator[str]:
    # Files from tool_resources, then every attachment that hands its file to code_interpreter.
    if isinstance(request, CreateThreadAndRunRequest):
        sources = [("tool_resources", request.tool_resources)]
        if request.thread is not None:
            sources.append(("thread.tool_resources", request.thread.tool_resources))
        for where, resources in sources:
            code = resources.code_interpreter if resources is not None else None
            for i in range(len(code.file_ids) if code is not None else 0):
                yield f"{where}.code_interpreter.file_ids[{i}]"
    prefix, listed = messages
    for m, message in enumerate(listed):
        for a, attachment in enumerate(message.attachments or []):
            if any(tool.type == "code_interpreter" for tool in attachment.tools):
                yield f"{prefix}[{m}].attachments[{a}]"


def _judge_vector_store_helper(request: CreateThreadAndRunRequest, rules: ContentRules, f: Findings) -> None:
    helper = rules.vector_store_helper
    thread = request.thread
    resources = thread.tool_resources if thread is not None else None
    file_search = resources.file_search if resources is not None else None
    stores = file_search.vector_stores if file_search is not None else None
    if helper is None or not stores:
        return
    where = "thread.tool_resources.file_search.vector_stores"
    if not helper.allowed:
        f.add("content.vector_store_helper", where, "creating a vector store with the thread is not allowed")
        return
    for i, store in enumerate(stores):
        count = len(store.file_ids or ())
        if helper.max_files is not None and count > helper.max_files:
            message = f"the thread's new vector store has {count} files, at most {helper.max_files} allowed"
            f.add("content.vector_store_helper", f"{where}[{i}].file_ids", message)


# --- metadata -------------------------------------------------------------------------------


def judge_metadata(metadata: dict[str, str] | None, rules: MetadataRules, f: Findings) -> None:
    sent = metadata or {}
    for key in sorted(rules.required - sent.keys()):  # sorted: a stable order for clients and tests
        f.add("metadata.required", f"metadata.{key}", f"metadata key {key!r} is required")
    for key, allowed in rules.allowed_values.items():
        value = sent.get(key)
        if value is not None and value not in allowed:
            choices = ", ".join(sorted(allowed))
            f.add("metadata.allowed_values", f"metadata.{key}", f"metadata {key} {value!r} is not allowed ({choices})")
