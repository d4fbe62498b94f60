"""The synthetic VQA generator: deterministic, geometrically exact, answer really drawn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from awares_train.data.synthetic import (
    QUESTIONS,
    SyntheticConfig,
    _draw_code,
    generate_sample,
    write_split,
)

crops = pytest.importorskip("awares_tool.crops")


def test_same_seed_same_bytes() -> None:
    cfg = SyntheticConfig(seed=7)
    a, b = generate_sample(11, cfg), generate_sample(11, cfg)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.model_dump() == b.model_dump()
    c = generate_sample(11, SyntheticConfig(seed=8))
    assert c.image.tobytes() != a.image.tobytes()


def test_splits_differ() -> None:
    cfg = SyntheticConfig()
    assert generate_sample(0, cfg, "train").image.tobytes() != generate_sample(0, cfg, "test").image.tobytes()


@pytest.mark.parametrize("size", [(448, 448), (1024, 640), (640, 1024), (2048, 2048)])
def test_evidence_inside_target_quadrant(size: tuple[int, int]) -> None:
    w, h = size
    cfg = SyntheticConfig(width=w, height=h, crop_share=1.0, font_size_range=(14, 40))
    cs = crops.get_crop_set("awares9")
    center = cs.box("4", w, h)
    for i in range(40 if w * h < 2_000_000 else 10):
        s = generate_sample(i, cfg)
        assert s.needs_crop and s.kind == "code" and s.evidence_box is not None
        assert s.image.size == (w, h)
        assert len(s.target_regions) == 1 and s.target_regions[0] in {"0", "1", "2", "3"}
        x0, y0, x1, y1 = cs.box(s.target_regions[0], w, h)
        b = s.evidence_box
        assert x0 <= b[0] and y0 <= b[1] and b[2] <= x1 and b[3] <= y1
        assert not (center[0] <= b[0] and center[1] <= b[1] and b[2] <= center[2] and b[3] <= center[3])
        assert 14 <= s.font_size <= 40


def test_answer_text_is_drawn_in_the_box() -> None:
    cfg = SyntheticConfig(crop_share=1.0)
    for i in range(10):
        s = generate_sample(i, cfg)
        box = s.evidence_box
        ref = Image.new("RGB", s.image.size, s.scene.background)
        _draw_code(ImageDraw.Draw(ref), s.answers[0], s.font_size, box)
        assert ref.crop(box).tobytes() == s.image.crop(box).tobytes()
        other = f"{(int(s.answers[0]) + 1) % 1000:03d}"
        wrong = Image.new("RGB", s.image.size, s.scene.background)
        _draw_code(ImageDraw.Draw(wrong), other, s.font_size, box)
        assert wrong.crop(box).tobytes() != s.image.crop(box).tobytes()
        dark = sum(s.image.crop(box).convert("L").histogram()[:80])
        assert dark > 20  # black digits, not an empty box


def test_non_crop_answers_match_scene() -> None:
    cfg = SyntheticConfig(crop_share=0.0)
    for i in range(60):
        s = generate_sample(i, cfg)
        assert not s.needs_crop and s.evidence_box is None and s.target_regions == []
        if s.kind == "count":
            assert s.answers[0] == str(len(s.scene.shapes))
        elif s.kind == "color":
            shape = s.question.split()[-1].rstrip("?")
            assert s.answers == [next(o.color for o in s.scene.shapes if o.kind == shape)]
        else:
            color = s.question.split()[-1].rstrip("?")
            assert s.answers == [next(o.kind for o in s.scene.shapes if o.color == color)]


@pytest.mark.parametrize("share", [0.2, 0.5, 0.8])
def test_question_mix(share: float) -> None:
    cfg = SyntheticConfig(crop_share=share, seed=3)
    kinds = [generate_sample(i, cfg).kind for i in range(300)]
    frac = kinds.count("code") / len(kinds)
    assert abs(frac - share) < 0.09
    assert {k for k in kinds if k != "code"} == {"color", "shape", "count"}
    code_qs = {generate_sample(i, cfg).question for i in range(300) if kinds[i] == "code"}
    assert code_qs == {QUESTIONS["code"]}


def test_write_split(tmp_path: Path) -> None:
    path = write_split(tmp_path / "val", 6, SyntheticConfig(crop_share=0.5), "val")
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(recs) == 6
    for r in recs:
        assert {"image", "question", "answers", "needs_crop", "evidence_box", "target_regions", "id",
                "split"} <= set(r)
        assert r["split"] == "val"
        img = Image.open(path.parent / r["image"])
        assert img.size == (448, 448)
        assert (r["evidence_box"] is not None) == r["needs_crop"]
