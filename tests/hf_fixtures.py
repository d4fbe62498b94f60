"""Shared helpers for tests that run tiny random VLMs (import them from a test module; needs transformers).

``tiny_backend`` is a pytest fixture: import it into a test module to use it. The models are built once per
process by :func:`awares_train.testing.tiny_vlm_path`.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterator

import pytest
from PIL import Image

from awares_train.testing import FAMILIES, tiny_vlm_path

__all__ = [
    "FAMILIES", "QWEN_FAMILIES", "noise_image", "record_generate", "single_torch_thread", "spy_on_rollouts",
    "tiny_backend",
]

QWEN_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f.startswith("qwen"))


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    """A random RGB image: distinct seeds give distinct vision features (a flat colour would not)."""
    return Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3))


def spy_on_rollouts(monkeypatch: pytest.MonkeyPatch, record: Callable[[Any], Any]) -> list[Any]:
    """Call ``record(trainer)`` after each GRPO generation step; returns the list of what it returned.

    Tests read the trainer's state right after rollouts (``last_batch``, the environments) through this,
    without a hook in the trainer that only tests would use.
    """
    from awares_train.grpo.train import AwaresGRPOTrainer

    seen: list[Any] = []
    orig = AwaresGRPOTrainer._generate_and_score_completions

    def spy(self: Any, inputs: Any) -> Any:
        out = orig(self, inputs)
        seen.append(record(self))
        return out

    monkeypatch.setattr(AwaresGRPOTrainer, "_generate_and_score_completions", spy)
    return seen


def record_generate(backend: Any) -> dict[str, Any]:
    """Wrap ``backend.model.generate`` to keep the raw logits of every step and the generated sequence.

    Returns the dict that each later call fills with ``logits`` (list of (1, vocab) tensors) and ``sequences``.
    """
    seen: dict[str, Any] = {}
    original = backend.model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        kwargs["output_logits"] = True
        out = original(*args, **kwargs)
        seen["logits"] = [step.clone() for step in out.logits]
        seen["sequences"] = out.sequences.clone()
        return out

    backend.model.generate = generate
    return seen


@pytest.fixture(scope="module")
def tiny_backend() -> Iterator[Callable[..., Any]]:
    """Factory ``tiny_backend(family, fresh=False)``: a TransformersBackend on the tiny model (cached unless fresh)."""
    from awares_tool.backends.transformers import TransformersBackend

    cache: dict[str, Any] = {}

    def make(family: str, fresh: bool = False) -> Any:
        if fresh:
            return TransformersBackend(tiny_vlm_path(family))
        if family not in cache:
            cache[family] = TransformersBackend(tiny_vlm_path(family))
        return cache[family]

    yield make
    for backend in cache.values():
        backend.close()


@pytest.fixture(scope="module")
def single_torch_thread() -> Iterator[None]:
    """Run torch on one thread for the module, then restore the setting.

    Tiny models gain nothing from intra-op threads, and on a loaded 2-core machine torch's thread pool
    makes them about 10x slower (measured: a 6-token generate 0.23 s on 1 thread, 3.9 s on 2).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
