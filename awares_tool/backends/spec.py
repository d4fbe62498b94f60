"""Backend spec strings: ``KIND:TARGET?key=value&key=value``, parsed into typed options.

A spec names a backend and, after a ``?``, its options::

    transformers:Qwen/Qwen2.5-VL-7B-Instruct?dtype=bfloat16&device=cuda:0&attn=sdpa
    transformers:/models/awares?device=auto                  # spread over every GPU (device_map="auto")
    llamacpp:/models/m.gguf?n_ctx=8192&threads=4&n_gpu_layers=-1
    openai:http://127.0.0.1:8000/v1#Qwen2.5-VL-7B?timeout=60&tool_images=true
    default?dtype=bfloat16                                   # the embedded model, with options

Each kind has one pydantic options model (:class:`TransformersOptions`, :class:`LlamaCppOptions`,
:class:`OpenAIOptions`); the same model checks options given as keyword arguments and as CLI flags
(``--device``, ``--dtype``, ``--attn``), so every path fails the same way: a :class:`BackendSpecError`
naming the bad key or value and listing the valid ones.

Where a ``?`` can be part of the target: options are read only after the *last* ``?`` (for ``openai:``,
only after the model's ``#``), and a target that exists on disk as written is never split. So a folder
named ``a?b`` works as ``transformers:a?b`` and ``transformers:a?b?dtype=bfloat16``; an OpenAI URL with
its own query string needs a ``#MODEL`` (or a bare ``#``) after it. A value that itself holds ``&`` or
``=`` is written percent-encoded (``%26``, ``%3D``); values are percent-decoded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote, unquote

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic import ValidationError, field_validator

from ..errors import BackendSpecError

__all__ = [
    "BackendSpec",
    "TransformersOptions",
    "LlamaCppOptions",
    "OpenAIOptions",
    "parse_backend_spec",
    "spec_with_options",
    "validate_options",
    "KINDS",
    "DEVICE_HELP",
    "DTYPE_HELP",
    "ATTN_HELP",
]

Kind = Literal["default", "transformers", "llamacpp", "openai"]
#: Spellings accepted before the ``:`` -> the kind they name.
KINDS: dict[str, Kind] = {
    "transformers": "transformers", "hf": "transformers",
    "llamacpp": "llamacpp", "llama.cpp": "llamacpp", "gguf": "llamacpp",
    "openai": "openai",
}
_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "f16": "float16",
                  "fp32": "float32", "float": "float32", "f32": "float32"}
_DEVICE = re.compile(r"cpu|auto|mps|cuda(:\d+)?")

#: Help texts of the ``--device`` / ``--dtype`` / ``--attn`` flags, one wording for every command.
DEVICE_HELP = ("transformers backends: cpu, cuda, cuda:N, mps, or auto (spread over every GPU); "
               "default: cuda when available, else cpu.")
DTYPE_HELP = ("transformers backends: bfloat16, float16, float32, or auto (the checkpoint's own); default: bfloat16 "
              "on GPUs that support it, on CPU bfloat16 for bf16 checkpoints where the CPU has bf16 instructions, "
              "else float32.")
ATTN_HELP = "transformers backends: attention implementation, sdpa (default), eager, flash_attention_2, ..."


class _Options(BaseModel):
    """Options of one backend kind; unknown keys are refused (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    #: option name -> the backend constructor's keyword, where they differ.
    _RENAME: ClassVar[dict[str, str]] = {}
    kind: ClassVar[str] = ""

    def constructor_kwargs(self) -> dict[str, Any]:
        """The options that were set, under the backend constructor's keyword names."""
        return {self._RENAME.get(k, k): getattr(self, k) for k in sorted(self.model_fields_set)
                if getattr(self, k) is not None}

    def cache_key(self) -> str:
        """A stable text of every option's value (defaults included), for the backend cache."""
        data = self.model_dump(mode="json", exclude={"model_card"})
        card = getattr(self, "model_card", None)
        data["model_card"] = card.model_dump(mode="json") if isinstance(card, BaseModel) else card
        return json.dumps(data, sort_keys=True, default=str)


class _CardOption(BaseModel):
    """The protocol a model speaks (a ModelCard, a built-in card name or a card path): Python callers and --card."""

    model_card: Any = None


class TransformersOptions(_Options, _CardOption):
    """Options of ``transformers:`` (and ``default``) backends. None means "choose for this machine"
    (see :func:`awares_tool.backends.placement.choose_placement`)."""

    kind: ClassVar[str] = "transformers"
    _RENAME: ClassVar[dict[str, str]] = {"attn": "attn_implementation"}

    device: str | None = Field(None, description="cpu, cuda, cuda:N, mps, or auto: accelerate's device_map='auto'.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = Field(
        None, description="Weights and compute dtype; auto keeps the checkpoint's own.")
    attn: Literal["sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"] | None = Field(
        None, validation_alias=AliasChoices("attn", "attn_implementation"), description="Attention kernel.")
    threads: PositiveInt | None = Field(None, description="torch intra-op threads (process-wide).")
    min_pixels: PositiveInt | None = Field(None, description="Image processor's minimum pixels (Qwen-VL).")
    max_pixels: PositiveInt | None = Field(None, description="Image processor's maximum pixels (Qwen-VL).")
    reuse_cache: bool = Field(True, description="Reuse the first turn's KV cache in the second.")

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype_alias(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().lower().removeprefix("torch.")
            return _DTYPE_ALIASES.get(v, v)
        return str(v).removeprefix("torch.") if v is not None else v  # a torch.dtype object

    @field_validator("device", mode="before")
    @classmethod
    def _device_form(cls, v: Any) -> Any:
        if v is None:
            return v
        v = str(v).strip().lower()  # also a torch.device
        if not _DEVICE.fullmatch(v):
            raise ValueError("expected cpu, cuda, cuda:N (N a GPU index), mps or auto")
        return v


class LlamaCppOptions(_Options):
    """Options of ``llamacpp:`` backends (see :class:`~awares_tool.backends.llamacpp.LlamaCppBackend`)."""

    kind: ClassVar[str] = "llamacpp"
    _RENAME: ClassVar[dict[str, str]] = {"threads": "n_threads"}

    mmproj: str | None = Field(None, description="Projector GGUF (default: mmproj*.gguf beside the model).")
    chat_handler: Literal["auto", "mtmd", "qwen2.5-vl"] | None = None
    n_ctx: PositiveInt | None = Field(None, description="Context length in tokens.")
    threads: PositiveInt | None = Field(None, validation_alias=AliasChoices("threads", "n_threads"))
    n_batch: PositiveInt | None = None
    n_gpu_layers: int | None = Field(None, ge=-1, description="Layers offloaded to the GPU (-1: all).")
    reuse_cache: bool | None = None
    token_family: str | None = None
    verbose: bool | None = None
    completion_kwargs: dict[str, Any] | None = Field(None, description="Python callers only.")

    @field_validator("mmproj", mode="before")
    @classmethod
    def _path_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, Path) else v


class OpenAIOptions(_Options, _CardOption):
    """Options of ``openai:`` backends (see :class:`~awares_tool.backends.openai.OpenAIBackend`)."""

    kind: ClassVar[str] = "openai"
    _RENAME: ClassVar[dict[str, str]] = {
        "timeout": "timeout_s", "connect_timeout": "connect_timeout_s", "backoff": "backoff_s",
        "max_backoff": "max_backoff_s", "tools": "use_tools",
    }

    timeout: PositiveFloat | None = Field(None, validation_alias=AliasChoices("timeout", "timeout_s"))
    connect_timeout: PositiveFloat | None = Field(
        None, validation_alias=AliasChoices("connect_timeout", "connect_timeout_s"))
    max_retries: NonNegativeInt | None = None
    backoff: PositiveFloat | None = Field(None, validation_alias=AliasChoices("backoff", "backoff_s"))
    max_backoff: PositiveFloat | None = Field(None, validation_alias=AliasChoices("max_backoff", "max_backoff_s"))
    concurrency: PositiveInt | None = None
    tools: bool | None = Field(None, validation_alias=AliasChoices("tools", "use_tools"),
                               description="Offer get_crops as a native tool (false: text protocol).")
    tool_images: bool | None = None
    token_family: str | None = None
    image_format: Literal["PNG", "JPEG", "WEBP"] | None = None
    # Python callers only (a key in a spec string would end up in logs and shell history):
    api_key: str | None = Field(None, repr=False)
    extra_body: dict[str, Any] | None = None

    @field_validator("image_format", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

_OPTIONS: dict[str, type[_Options]] = {
    "default": TransformersOptions, "transformers": TransformersOptions,
    "llamacpp": LlamaCppOptions, "openai": OpenAIOptions,
}


def _valid_keys(model: type[_Options]) -> tuple[str, ...]:
    # model_card is for Python callers and --card, not spec strings: last, so the spec options lead
    return tuple(sorted(model.model_fields, key=lambda k: k == "model_card"))


def validate_options(model: type[_Options], values: dict[str, Any], where: str) -> _Options:
    """``model(**values)``, with pydantic's errors turned into one :class:`BackendSpecError`."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else None
        valid = _valid_keys(model)
        if err["type"] == "extra_forbidden":
            raise BackendSpecError(
                f"unknown option {key!r} for {model.kind} backends{where}; valid options: {', '.join(valid)}",
                key=key, value=err["input"], valid=valid,
            ) from e
        field = _field_for(model, key)
        choices = _literal_choices(field.annotation) if field is not None else ()
        hint = f"; valid values: {', '.join(choices)}" if choices else f" ({err['msg'].removeprefix('Value error, ')})"
        raise BackendSpecError(
            f"bad value {err['input']!r} for option {key!r} of {model.kind} backends{where}{hint}",
            key=key, value=err["input"], valid=choices,
        ) from e


def _field_for(model: type[_Options], key: str | None) -> Any:
    """The field that option ``key`` sets (also through one of its aliases), or None."""
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if key == name or (isinstance(alias, AliasChoices) and key in alias.choices):
            return field
    return None


def _literal_choices(annotation: Any) -> tuple[str, ...]:
    from typing import get_args, get_origin

    if get_origin(annotation) is Literal:
        return tuple(str(a) for a in get_args(annotation))
    for arg in get_args(annotation):
        found = _literal_choices(arg)
        if found:
            return found
    return ()


class BackendSpec(BaseModel):
    """A parsed backend spec: kind, target (path, hub id or URL), OpenAI model name, typed options."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    kind: Kind
    target: str = ""
    model: str | None = None
    options: TransformersOptions | LlamaCppOptions | OpenAIOptions

    def with_options(self, **options: Any) -> "BackendSpec":
        """This spec with more options (None values are ignored: an unset CLI flag).

        Raises:
            BackendSpecError: An unknown or bad option, or one that the spec already sets to another value.
        """
        given = {k: v for k, v in options.items() if v is not None}
        if not given:
            return self
        model = type(self.options)
        extra = validate_options(model, given, f" (given as an argument to {self})")
        mine = {k: getattr(self.options, k) for k in self.options.model_fields_set}
        for k in extra.model_fields_set:
            if k in mine and mine[k] != getattr(extra, k):
                raise BackendSpecError(
                    f"option {k!r} is given twice for {self}: {mine[k]!r} in the spec and {getattr(extra, k)!r} as "
                    "an argument or flag; keep one", key=k, value=getattr(extra, k),
                )
        merged = {**mine, **{k: getattr(extra, k) for k in extra.model_fields_set}}
        return self.model_copy(update={"options": validate_options(model, merged, f" in {self}")})

    def normalised_target(self) -> str:
        """The target as the cache knows it: an existing local path resolved to an absolute one."""
        if self.kind in ("transformers", "llamacpp") and self.target:
            path = Path(self.target).expanduser()
            if path.exists():
                return str(path.resolve())
        if self.kind == "openai":
            return self.target.rstrip("/")
        return self.target

    def cache_key(self) -> tuple[str, str, str, str]:
        """Equal for specs that build the same backend (same kind, place, model and options)."""
        return (self.kind, self.normalised_target(), self.model or "", self.options.cache_key())

    def __str__(self) -> str:
        """The spec as a string that parses back to this spec (options that cannot be written are left out)."""
        head = "default" if self.kind == "default" else f"{self.kind}:{self.target}"
        if self.kind == "openai" and (self.model is not None or "?" in self.target):
            head += f"#{self.model or ''}"
        parts = []
        for k in sorted(self.options.model_fields_set):
            v = getattr(self.options, k)
            if isinstance(v, (str, int, float, bool)) and k != "api_key":
                text = str(v).lower() if isinstance(v, bool) else str(v)
                parts.append(f"{k}={quote(text, safe='/:.-_~')}")
        return head + ("?" + "&".join(parts) if parts else "")


def parse_backend_spec(spec: str | None) -> BackendSpec:
    """Parse ``KIND:TARGET?options`` (None or ``"default"`` is the embedded model) into a :class:`BackendSpec`.

    >>> spec = parse_backend_spec("transformers:/models/qwen?dtype=bf16&device=cuda:0")
    >>> spec.kind, spec.target, spec.options.dtype, spec.options.device
    ('transformers', '/models/qwen', 'bfloat16', 'cuda:0')
    >>> str(spec.with_options(attn="eager"))
    'transformers:/models/qwen?attn=eager&device=cuda:0&dtype=bfloat16'

    Raises:
        BackendSpecError: Not of the form ``KIND:TARGET``, an unknown kind, or an unknown or bad option.
    """
    if spec is None:
        spec = "default"
    if not isinstance(spec, str):
        raise TypeError(f"a backend spec must be a string, got {type(spec).__name__}")
    text = spec.strip()
    if text == "default" or text.startswith("default?"):
        query = text.partition("?")[2]
        options = validate_options(TransformersOptions, _query(query, spec), f" in {spec!r}")
        return BackendSpec(kind="default", options=options)
    word, sep, rest = text.partition(":")
    if not sep or not rest:
        raise BackendSpecError(
            f"backend spec {spec!r} is not of the form KIND:TARGET; use e.g. 'transformers:/path/to/model', "
            "'llamacpp:/path/model.gguf', 'openai:http://127.0.0.1:8080/v1#model', or omit it for the default model",
            value=spec, valid=tuple(KINDS),
        )
    kind = KINDS.get(word.lower())
    if kind is None:
        raise BackendSpecError(
            f"unknown backend kind {word!r} in {spec!r}; known kinds: transformers, llamacpp, openai "
            "(or 'default' for the embedded model)", value=word, valid=("transformers", "llamacpp", "openai"),
        )
    target, query = _split_options(kind, rest)
    model = None
    if kind == "openai":
        target, hash_, model_name = target.partition("#")
        model = model_name if hash_ and model_name else None
    if not target:
        raise BackendSpecError(f"backend spec {spec!r} has no target after {word}:", value=spec)
    options = validate_options(_OPTIONS[kind], _query(query, spec), f" in {spec!r}")
    return BackendSpec(kind=kind, target=target, model=model, options=options)


def spec_with_options(spec: str | None, **options: Any) -> str | None:
    """``spec`` with the given options written into it (None values skipped); None stays None without options.

    For callers that pass a spec on as a string (the UI's backend menu, the MCP server, build-data's
    recorded settings) rather than resolving it at once.

    Raises:
        BackendSpecError: As :meth:`BackendSpec.with_options`.
    """
    if spec is None and all(v is None for v in options.values()):
        return None
    return str(parse_backend_spec(spec).with_options(**options))


def _split_options(kind: str, rest: str) -> tuple[str, str]:
    """``(target, query)``: the query is what follows the last ``?`` (after the ``#`` for openai)."""
    at = rest.rfind("?")
    if at < 0:
        return rest, ""
    if kind == "openai":
        if at < rest.rfind("#"):
            return rest, ""
    elif Path(rest).expanduser().exists():
        return rest, ""  # a path that really has a '?' in it
    return rest[:at], rest[at + 1:]


def _query(query: str, spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        key = unquote(key).strip()
        if not eq or not key:
            raise BackendSpecError(
                f"option {item!r} in {spec!r} is not of the form key=value (options follow '?', joined by '&', "
                "e.g. ?dtype=bfloat16&device=cuda)", key=key or None, value=item,
            )
        if key in out:
            raise BackendSpecError(f"option {key!r} appears twice in {spec!r}; keep one", key=key, value=value)
        out[key] = unquote(value)
    return out
