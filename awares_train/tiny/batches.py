"""Turn images and conversations into model inputs exactly as the processor would, but fast.

Why: the processor re-renders and re-tokenizes everything per call; training on 2 CPU cores needs
every millisecond for the model. ``patchify`` reproduces ``Qwen2VLImageProcessorPil`` for images whose
sides are multiples of 28 (no resize needed), and :class:`ConversationEncoder` renders the chat template
once per distinct text layout and caches token ids and loss masks. ``tests/test_tiny_model.py`` checks
both against ``processor.apply_chat_template``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["patchify", "ConversationEncoder", "collate", "n_image_tokens"]

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)


def n_image_tokens(width: int, height: int) -> int:
    """Merged visual tokens of an image whose sides are multiples of 28."""
    return (width // 28) * (height // 28)


def patchify(img: Any, patch: int = 14, temporal: int = 2, merge: int = 2) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Pixel rows and grid of one RGB image with sides that are multiples of 28 (CLIP normalisation)."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    x = (torch.from_numpy(arr).permute(2, 0, 1) - MEAN) / STD
    c, h, w = x.shape
    if h % (patch * merge) or w % (patch * merge):
        raise ValueError(f"image sides must be multiples of {patch * merge}, got {w}x{h}")
    gh, gw = h // patch, w // patch
    x = x.reshape(c, gh // merge, merge, patch, gw // merge, merge, patch).permute(1, 4, 2, 5, 0, 3, 6)
    x = x.unsqueeze(5).expand(-1, -1, -1, -1, -1, temporal, -1, -1)
    return x.reshape(gh * gw, c * temporal * patch * patch).contiguous(), (1, gh, gw)


class ConversationEncoder:
    """Token ids + assistant-only labels for conversations, rendered with the model's chat template.

    A conversation is a list of ``(role, parts)`` with parts ``("image", n_tokens)`` or ``("text", str)``.
    Assistant turns get labels on their text and the closing ``<|im_end|>``; everything else is -100.
    """

    def __init__(self, tokenizer: Any, cache_size: int = 200_000) -> None:
        self.tok = tokenizer
        self.cache_size = cache_size
        self.image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
        self._cache: dict[Any, tuple[list[int], list[int]]] = {}

    def _render(self, conv: Sequence[tuple[str, Sequence[tuple[str, Any]]]], add_generation_prompt: bool) -> list[int]:
        msgs = [{"role": r, "content": [{"type": "image"} if k == "image" else {"type": "text", "text": v}
                                        for k, v in parts]} for r, parts in conv]
        text = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        counts = [v for _, parts in conv for k, v in parts if k == "image"]
        out: list[int] = []
        it = iter(counts)
        for t in ids:
            out.extend([t] * next(it) if t == self.image_pad else [t])
        return out

    def encode(self, conv: Sequence[tuple[str, Sequence[tuple[str, Any]]]],
               add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
        """Return ``(input_ids, labels)``; labels cover assistant turns only."""
        key = (tuple((r, tuple(p)) for r, p in conv), add_generation_prompt)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        ids = self._render(conv, add_generation_prompt)
        labels = [-100] * len(ids)
        end_id = self.tok.convert_tokens_to_ids("<|im_end|>")
        for i, (role, _) in enumerate(conv):
            if role != "assistant":
                continue
            start = len(self._render(conv[:i], True))
            j = start
            while ids[j] != end_id:
                j += 1
            labels[start:j + 1] = ids[start:j + 1]
        if len(self._cache) < self.cache_size:
            self._cache[key] = (ids, labels)
        return ids, labels


def collate(seqs: Sequence[tuple[list[int], list[int]]], pixel_rows: Sequence[torch.Tensor],
            grids: Sequence[tuple[int, int, int]], pad_id: int, image_pad: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; images are concatenated in order of appearance."""
    n = max(len(s[0]) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    lab = torch.full((len(seqs), n), -100, dtype=torch.long)
    am = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, (a, b) in enumerate(seqs):
        ids[i, :len(a)] = torch.tensor(a)
        lab[i, :len(b)] = torch.tensor(b)
        am[i, :len(a)] = 1
    return {"input_ids": ids, "labels": lab, "attention_mask": am,
            "mm_token_type_ids": (ids == image_pad).int(),
            "pixel_values": torch.cat(list(pixel_rows)), "image_grid_thw": torch.tensor(list(grids))}
