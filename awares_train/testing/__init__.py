"""Test helpers that need the training stack (torch, transformers): tiny random VLMs built offline."""

from __future__ import annotations

from .tiny_vlms import FAMILIES, build_tiny_vlm, tiny_vlm_path, token_family_overrides

__all__ = ["FAMILIES", "build_tiny_vlm", "tiny_vlm_path", "token_family_overrides"]
