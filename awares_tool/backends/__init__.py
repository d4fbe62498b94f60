"""Model backends and the spec strings that name them.

``resolve_backend`` turns what a user passes as ``backend=`` into a backend object:

- an object implementing :class:`~awares_tool.backends.base.VLMBackend` is used as is;
- ``"transformers:PATH_OR_ID"`` loads a Hugging Face model (extra ``hf``);
- ``"llamacpp:MODEL.gguf"`` / ``"openai:URL#MODEL"`` arrive with their backends (extras ``llamacpp``, ``openai``);
- ``None`` or ``"default"`` loads the embedded tiny AwaRes model shipped inside the package.

Heavy libraries are imported only when a backend of that kind is built.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError
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
    "default_model_path",
    "default_gguf_path",
    "DEFAULT_MODEL_NAME",
]

#: Folder name (inside ``awares_tool/models``) of the embedded default model.
DEFAULT_MODEL_NAME = "tiny-awares"
_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
_default_lock = threading.Lock()
_default_backend: Any = None


def default_model_path() -> Path:
    """Where the embedded default model lives (it may be absent in a source checkout under construction)."""
    return _MODELS_DIR / DEFAULT_MODEL_NAME


def default_gguf_path() -> Path:
    """The embedded default model as GGUF for the llama.cpp backend (its ``mmproj.gguf`` lies beside it)."""
    return _MODELS_DIR / f"{DEFAULT_MODEL_NAME}-gguf" / "model.gguf"


def resolve_backend(backend: Any = None, **options: Any) -> VLMBackend:
    """Return a backend object for ``backend`` (an object, a spec string, or None for the default model).

    Args:
        backend: Backend object or spec string (see the module docstring).
        **options: Passed to the backend constructor when a spec string is given.

    Raises:
        BackendUnavailableError: Unknown spec, or a model that is not there.
        MissingExtraError: The backend's optional dependency is not installed.
    """
    if backend is None or backend == "default":
        return _default(**options)
    if not isinstance(backend, str):
        if not callable(getattr(backend, "generate", None)):
            raise TypeError(f"backend must implement VLMBackend.generate(), got {type(backend).__name__}")
        return backend
    kind, sep, target = backend.partition(":")
    if not sep or not target:
        raise BackendUnavailableError(
            f"backend spec {backend!r} is not of the form KIND:TARGET; use e.g. 'transformers:/path/to/model', "
            "'llamacpp:/path/model.gguf', 'openai:http://127.0.0.1:8080/v1#model', or omit it for the default model"
        )
    if kind in ("transformers", "hf"):
        from .transformers import TransformersBackend

        return TransformersBackend(target, **options)
    if kind in ("llamacpp", "llama.cpp", "gguf"):
        try:
            from .llamacpp import LlamaCppBackend  # type: ignore[import-not-found]
        except ModuleNotFoundError as e:
            raise BackendUnavailableError("the llama.cpp backend is not part of this version yet") from e
        return LlamaCppBackend(target, **options)
    if kind == "openai":
        try:
            from .openai import OpenAIBackend  # type: ignore[import-not-found]
        except ModuleNotFoundError as e:
            raise BackendUnavailableError("the OpenAI-compatible backend is not part of this version yet") from e
        url, _, model = target.partition("#")
        return OpenAIBackend(url, model or None, **options)
    raise BackendUnavailableError(
        f"unknown backend kind {kind!r} in {backend!r}; known kinds: transformers, llamacpp, openai"
    )


def _default(**options: Any) -> VLMBackend:
    """The embedded tiny AwaRes model, loaded once per process."""
    global _default_backend
    path = default_model_path()
    if not (path / "config.json").is_file():
        raise BackendUnavailableError(
            f"the embedded default model is missing at {path}; pass backend='transformers:PATH' "
            "(or another backend object) explicitly"
        )
    if options:
        from .transformers import TransformersBackend

        return TransformersBackend(path, **options)
    with _default_lock:
        if _default_backend is None:
            from .transformers import TransformersBackend

            _default_backend = TransformersBackend(path)
            _default_backend.name = "default:" + DEFAULT_MODEL_NAME
        return _default_backend
