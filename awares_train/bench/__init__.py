"""``awares-bench``: a generated high-resolution needle benchmark whose every item knows its evidence box.

Items are documents, charts and scenes drawn with Pillow's embedded font, deterministic by seed, sized for a
reader profile (``qwen2.5-vl`` or the embedded ``tiny`` model). Whether an item needs a crop follows from the
rendered size of its evidence text in the low-res view, never from its question, and the evidence is placed
so that every crop of the ``awares9`` set (and diagonal two-crop pairs) is the right request for some items.
See ``docs/needle_bench.md``.
"""

from .generator import KINDS, SPLITS, BenchConfig, BenchItem, GenerationError, generate_item, write_split
from .profiles import PROFILES, BenchProfile, get_profile

__all__ = ["KINDS", "SPLITS", "BenchConfig", "BenchItem", "BenchProfile", "GenerationError", "PROFILES",
           "generate_item", "get_profile", "write_split"]
