"""Model backends and the spec strings that name them.

``resolve_backend`` turns what a user passes as ``backend=`` into a backend object:

- an object implementing :class:`~awares_tool.backends.base.VLMBackend` is used as is;
- ``"transformers:PATH_OR_ID"`` loads a Hugging Face model (extra ``hf``);
- ``"llamacpp:MODEL.gguf"`` / ``"openai:URL#MODEL"`` build those backends (extras ``llamacpp``, ``openai``);
- ``None`` or ``"default"`` loads the embedded tiny AwaRes model shipped inside the package.

A spec may carry options after a ``?`` (``transformers:PATH?dtype=bfloat16&device=cuda:0&attn=sdpa``; the
syntax and every option are in :mod:`awares_tool.backends.spec`), and keyword arguments add more (the CLIs'
``--device`` / ``--dtype`` / ``--attn``). A spec resolves to a backend loaded **once per process**: the same
kind, target and options give the same object, from any thread. :func:`clear_cache` closes and forgets them
(the memory is freed), or call ``close()`` on one: the next request for it loads it anew.

Heavy libraries are imported only when a backend of that kind is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError
from .cache import BackendCache
from .spec import BackendSpec, parse_backend_spec, spec_with_options
from .base import Generation, GenerationSettings, ImagePart, Message, ModelCard, TextPart, Usage, VLMBackend

__all__ = [
    "VLMBackend",
    "Message",
    "TextPart",
    "ImagePart",
    "Generation",
    "GenerationSettings",
    "Usage",
    "ModelCard",
    "resolve_backend",
    "clear_cache",
    "is_cached",
    "spec_with_options",
    "default_model_path",
    "default_gguf_path",
    "DEFAULT_MODEL_NAME",
]

#: Folder name (inside ``awares_tool/models``) of the embedded default model.
DEFAULT_MODEL_NAME = "tiny-awares"
_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: The process-wide cache behind :func:`resolve_backend`.
_CACHE = BackendCache()


def default_model_path() -> Path:
    """Where the embedded default model lives (it may be absent in a source checkout under construction)."""
    return _MODELS_DIR / DEFAULT_MODEL_NAME


def default_gguf_path() -> Path:
    """The embedded default model as GGUF for the llama.cpp backend (its ``mmproj.gguf`` lies beside it)."""
    return _MODELS_DIR / f"{DEFAULT_MODEL_NAME}-gguf" / "model.gguf"


def resolve_backend(backend: Any = None, **options: Any) -> VLMBackend:
    """Return a backend object for ``backend`` (an object, a spec string, or None for the default model).

    The one function that turns a spec plus options (CLI flags, keyword arguments) into a backend; spec
    strings are loaded once per process (see the module docstring).

    Args:
        backend: Backend object or spec string (see the module docstring).
        **options: Options of that backend kind, added to the spec's own (None values are ignored, so unset
            CLI flags can be passed as they are), e.g. ``device="cuda:1"``, ``dtype="bfloat16"``,
            ``attn="sdpa"`` for transformers, ``mmproj=``, ``n_ctx=`` for llama.cpp, ``timeout=`` for openai.

    Raises:
        BackendSpecError: A malformed spec, an unknown kind, an unknown or bad option, or an option given
            both in the spec and as an argument with different values.
        BackendUnavailableError: A model that is not there, or a device that this machine does not have.
        MissingExtraError: The backend's optional dependency is not installed.
    """
    if backend is not None and not isinstance(backend, str):
        if not callable(getattr(backend, "generate", None)):
            raise TypeError(f"backend must implement VLMBackend.generate(), got {type(backend).__name__}")
        if any(v is not None for v in options.values()):
            raise TypeError(f"options {sorted(options)} apply to spec strings; configure the "
                            f"{type(backend).__name__} object itself")
        return backend
    spec = parse_backend_spec(backend).with_options(**options)
    return _CACHE.get(_key(spec), lambda: _build(spec))


def clear_cache(backend: str | None = None, **options: Any) -> int:
    """Close and forget cached backends: all of them, or only the one that ``backend`` (+ options) names.

    Returns how many were closed. A backend object obtained before is unusable afterwards; asking
    :func:`resolve_backend` again loads a new one.
    """
    if backend is None and not options:
        return _CACHE.clear()
    return _CACHE.clear(_key(parse_backend_spec(backend).with_options(**options)))


def is_cached(backend: str | None = None, **options: Any) -> bool:
    """Whether the backend that ``backend`` (+ options) names is loaded in this process (never loads it)."""
    return _CACHE.contains(_key(parse_backend_spec(backend).with_options(**options)))


def _key(spec: BackendSpec) -> tuple[str, ...]:
    # The embedded model is keyed by where it lies too (a checkout may swap the folder while a process runs).
    return (*spec.cache_key(), str(default_model_path()) if spec.kind == "default" else "")


def _build(spec: BackendSpec) -> VLMBackend:
    kwargs = spec.options.constructor_kwargs()
    if spec.kind == "default":
        path = default_model_path()
        if not (path / "config.json").is_file():
            raise BackendUnavailableError(
                f"the embedded default model is missing at {path}; pass backend='transformers:PATH' "
                "(or another backend object) explicitly"
            )
        from .transformers import TransformersBackend

        be = TransformersBackend(path, **kwargs)
        be.name = "default:" + DEFAULT_MODEL_NAME
        return be
    if spec.kind == "transformers":
        from .transformers import TransformersBackend

        return TransformersBackend(spec.target, **kwargs)
    if spec.kind == "llamacpp":
        from .llamacpp import LlamaCppBackend

        return LlamaCppBackend(spec.target, **kwargs)
    from .openai import OpenAIBackend

    return OpenAIBackend(spec.target, spec.model, **kwargs)
