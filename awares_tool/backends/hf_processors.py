"""Build Qwen-VL processors when torchvision cannot be imported.

Why this module exists: the stock Qwen2-VL / Qwen2.5-VL / Qwen3-VL processors need a *video*
processor, and transformers only defines video processors when torchvision imports. On our
reference machines (torch 2.13.0+cpu, transformers 5.24) the only torchvision for torch 2.13 is
0.28.0, a CUDA-only build whose import fails (``operator torchvision::nms does not exist``).
Without it ``Qwen2_5_VLProcessor(..., video_processor=None)`` raises, and
``AutoProcessor.from_pretrained(folder)`` silently returns a bare tokenizer.

Workaround (remove once a CPU torchvision matching torch is installable): an image-only subclass
of each processor that passes ``video_processor=None``, registered with ``AutoProcessor`` for the
family's config class. With a working torchvision nothing is registered and the stock classes load.
Folders that name the stock class (every real Qwen-VL checkpoint, and any model saved where torchvision
works) are loaded with the image-only class of their config's family, which skips the video processor.

This module imports transformers lazily so ``awares_tool`` itself stays light.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
from pathlib import Path
from typing import Any

from awares_tool.errors import BackendUnavailableError, MissingExtraError

__all__ = [
    "torchvision_usable",
    "image_only_processor_class",
    "register_image_only_processors",
    "load_processor",
    "PROCESSOR_CLASS_FILES",
]

#: The files of a model folder that may name its processor class, in the order transformers reads them.
PROCESSOR_CLASS_FILES: tuple[str, ...] = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")

logger = logging.getLogger(__name__)

# (module of the processor, processor class, config class) per Qwen-VL family.
_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("transformers", "Qwen2VLProcessor", "Qwen2VLConfig"),
    ("transformers", "Qwen2_5_VLProcessor", "Qwen2_5_VLConfig"),
    ("transformers", "Qwen3VLProcessor", "Qwen3VLConfig"),
)

_registered = False


@functools.cache
def torchvision_usable() -> bool:
    """Whether torchvision imports cleanly alongside the installed torch.

    Any exception counts as unusable: the CUDA-only 0.28 wheel raises ``RuntimeError`` on import
    with the CPU torch, a missing install raises ``ImportError``.
    """
    try:
        importlib.import_module("torchvision")
    except Exception as e:  # noqa: BLE001 - any import failure means "do not rely on it"
        logger.debug("torchvision not usable: %s", e)
        return False
    return True


@functools.cache
def image_only_processor_class(base_cls: type) -> type:
    """Return a subclass of ``base_cls`` that never builds a video processor.

    The processor's attributes are read from the ``__init__`` signature, so the subclass keeps
    ``image_processor``, ``tokenizer`` and ``chat_template`` and always passes
    ``video_processor=None``. Cached so that every call returns the same class (``AutoProcessor``
    registration and ``isinstance`` checks rely on identity).

    Args:
        base_cls: A processor class such as ``transformers.Qwen2_5_VLProcessor``.

    Returns:
        The image-only subclass, named ``<Base>ImageOnly``.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.pop("video_processor", None)
        base_cls.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    name = base_cls.__name__ + "ImageOnly"
    cls = type(name, (base_cls,), {"__init__": __init__, "__module__": __name__, "__qualname__": name})
    return cls


def _transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError as e:
        raise MissingExtraError(
            "transformers is not installed; install the hf extra: pip install 'awares[hf]'"
        ) from e


def register_image_only_processors() -> None:
    """Register image-only Qwen-VL processors with ``AutoProcessor`` when torchvision is unusable.

    Idempotent and cheap after the first call. With a usable torchvision it does nothing, so the
    stock processors (which can also handle video) are used.
    """
    global _registered
    if _registered or torchvision_usable():
        _registered = True
        return
    tf = _transformers()
    for _module, proc_name, cfg_name in _FAMILIES:
        proc_cls = getattr(tf, proc_name, None)
        cfg_cls = getattr(tf, cfg_name, None)
        if proc_cls is None or cfg_cls is None:  # older transformers without this family
            continue
        tf.AutoProcessor.register(cfg_cls, image_only_processor_class(proc_cls), exist_ok=True)
    _registered = True


def load_processor(path_or_id: str, **kwargs: Any) -> Any:
    """Load a VLM processor, working around the missing torchvision where needed.

    Args:
        path_or_id: Local model folder (or hub id when online).
        **kwargs: Passed to ``AutoProcessor.from_pretrained``.

    Returns:
        A ``transformers.ProcessorMixin`` instance.

    Raises:
        BackendUnavailableError: If loading fails or yields only a tokenizer (transformers does
            that silently when it cannot build the processor class named in the folder).
    """
    tf = _transformers()
    register_image_only_processors()
    try:
        # Our own folders name the image-only class, which AutoProcessor cannot resolve by name (it is built
        # here, not in transformers), torchvision or not; without torchvision, folders naming the stock class
        # (real checkpoints) cannot build its video processor. Both load as the family's image-only class.
        need = not torchvision_usable() or str(_declared_processor_class(path_or_id)).endswith("ImageOnly")
        image_only = _image_only_family_class(tf, path_or_id) if need else None
        if image_only is not None:
            proc = image_only.from_pretrained(str(path_or_id), **kwargs)
        else:
            proc = tf.AutoProcessor.from_pretrained(str(path_or_id), **kwargs)
    except Exception as e:  # noqa: BLE001 - surface as one clear backend error
        raise BackendUnavailableError(f"cannot load a processor from {path_or_id!r}: {e}") from e
    if not isinstance(proc, tf.ProcessorMixin):
        raise BackendUnavailableError(
            f"AutoProcessor.from_pretrained({str(path_or_id)!r}) returned a bare {type(proc).__name__}, "
            "not a processor: the folder's processor_class could not be built (for Qwen-VL without "
            "torchvision this needs register_image_only_processors(); for other families install "
            "a torchvision that matches torch or check processor_config.json)"
        )
    return proc


def _declared_processor_class(path_or_id: str) -> str | None:
    """The processor class a local model folder names (processor, preprocessor or tokenizer config), if any."""
    folder = Path(path_or_id)
    for name in PROCESSOR_CLASS_FILES:
        try:
            declared = json.loads((folder / name).read_text()).get("processor_class")
        except (OSError, ValueError, AttributeError):  # absent, unreadable, not a JSON object: look further
            continue
        if declared:
            return str(declared)
    return None


def _image_only_family_class(tf: Any, path_or_id: str) -> type | None:
    """The image-only processor class of the Qwen-VL family of the folder's config, or None for other models."""
    try:
        config = tf.AutoConfig.from_pretrained(str(path_or_id))
    except Exception as e:  # noqa: BLE001 - not a model folder AutoConfig reads; AutoProcessor says why
        logger.debug("no config in %s: %s", path_or_id, e)
        return None
    for _module, proc_name, cfg_name in _FAMILIES:
        if type(config).__name__ == cfg_name and hasattr(tf, proc_name):
            return image_only_processor_class(getattr(tf, proc_name))
    return None
