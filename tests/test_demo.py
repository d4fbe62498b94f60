"""``make demo``: the embedded default on the shipped demo items, through the public loop.

The items are the one-code image (a crop question and a low-res one) and one document, one chart and one scene
item of awares-bench, chosen among test items the shipped model answers right (``demo.json`` says which);
greedy decoding on fixed images, so the answers and regions are deterministic.
"""

from __future__ import annotations

import json

import pytest

from awares_tool.crops import get_crop_set
from awares_tool.demo import ASSETS, demo_items, run_demo
from awares_tool.images import open_image

HALF_REGIONS = {"5", "6", "7", "8"}  # top, bottom, left, right


def test_demo_items_cover_the_three_kinds_and_a_half_or_two_crop_target():
    items = demo_items()
    kinds = [q.get("benchmark") for _, q in items if q.get("benchmark")]
    assert sorted(kinds) == ["chart", "document", "scene"]
    targets = [q["target_regions"] for _, q in items if q.get("benchmark")]
    assert any(len(t) == 2 or set(t) & HALF_REGIONS for t in targets), targets
    names = set(get_crop_set("awares9").region_names())
    for image, q in items:
        assert set(q.get("target_regions", [])) <= names and image.is_file()
        open_image(image)  # every shipped image decodes
    spec = json.loads((ASSETS / "demo.json").read_text())
    assert all(it["source"] for it in spec["items"])


@pytest.mark.slow
def test_demo_answers_every_item_right_and_fetches_the_target_crops(tmp_path):
    pytest.importorskip("transformers")
    from awares_tool.backends import default_model_path

    if not (default_model_path() / "config.json").is_file():
        pytest.skip("no embedded default model")
    lines: list[str] = []
    results = run_demo(tmp_path, backend="default", echo=lines.append)
    items = demo_items()
    assert len(results) == len(items)
    for (image, q), res in zip(items, results):
        accepted = [str(a).lower() for a in q.get("answers") or [q["answer"]]]
        assert res.error is None and res.answer.strip().lower() in accepted, (q["question"], res.answer)
        assert res.regions == q["target_regions"], (q["question"], res.regions)
        assert res.tokens.rtr is not None and res.tokens.rtr < 1.0
    text = "\n".join(lines)
    assert text.count("(correct)") == len(items) and "expected" not in text
    assert all(f"{kind} item of awares-bench" in text for kind in ("document", "chart", "scene"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"demo_q{i + 1}_overlay.png"
                                                                for i in range(len(items)))
