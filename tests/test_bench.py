"""awares-bench: the generated needle benchmark (determinism, targets, labels, sizes) and its run/report path."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from awares_tool import ScriptedBackend
from awares_tool.crops import get_crop_set, regions_for_box
from awares_tool.episode import CropEpisode
from awares_train.bench import BenchConfig, GenerationError, generate_item, get_profile, write_split
from awares_train.bench.cli import app
from awares_train.bench.canvas import text_box
from awares_train.bench.readability import digit_height, view_scales
from awares_train.bench.run import run_bench
from awares_train.eval.harness import load_eval_items
from awares_train.eval.intervals import t_interval, t_value, wilson_interval

runner = CliRunner()
AWARES9 = get_crop_set("awares9")


def _items(cfg: BenchConfig, n: int, split: str = "test", keep_images: int = 0):
    items, images = [], {}
    for i in range(n):
        item, img = generate_item(cfg, split, i)
        items.append(item)
        if i < keep_images:
            images[item.id] = img
    return items, images


@pytest.fixture(scope="module")
def tiny():
    return _items(BenchConfig(profile="tiny"), 240, keep_images=60)


@pytest.fixture(scope="module")
def tiny_all_crop():
    return _items(BenchConfig(profile="tiny", lowres_share=0.0), 150)[0]


@pytest.fixture(scope="module")
def qwen():
    return _items(BenchConfig(profile="qwen2.5-vl"), 16, keep_images=16)


# --- determinism ------------------------------------------------------------------------------------------


def _digest(path: Path) -> dict[str, str]:
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_same_arguments_give_the_same_bytes(tmp_path):
    cfg = BenchConfig(profile="tiny", seed=3)
    a = write_split(tmp_path / "a", cfg, "test", 8)
    b = write_split(tmp_path / "b", cfg, "test", 8, workers=2)  # parallel drawing: same output
    assert _digest(a.parent) == _digest(b.parent)
    for i in (0, 5):  # qwen-sized images too (drawn in memory)
        (x, ix), (y, iy) = (generate_item(BenchConfig(), "val", i) for _ in range(2))
        assert x == y and ix.tobytes() == iy.tobytes()


def test_splits_and_seeds_give_different_items():
    cfg = BenchConfig(profile="tiny")
    train = [generate_item(cfg, "train", i) for i in range(12)]
    test = [generate_item(cfg, "test", i) for i in range(12)]
    other_seed = [generate_item(BenchConfig(profile="tiny", seed=1), "test", i) for i in range(12)]

    def key(pair):
        item, img = pair
        return hashlib.sha256(img.tobytes()).hexdigest()

    assert not {key(p) for p in train} & {key(p) for p in test}
    assert not {key(p) for p in test} & {key(p) for p in other_seed}
    assert {p[0].id for p in train}.isdisjoint({p[0].id for p in test})


# --- where the evidence is ----------------------------------------------------------------------------------


def test_every_region_and_two_crop_targets_occur(tiny_all_crop):
    targets = Counter("+".join(it.target_regions) for it in tiny_all_crop)
    assert all(it.needs_crop for it in tiny_all_crop)
    assert {str(r) for r in range(9)} <= set(targets), targets
    assert targets["0+3"] + targets["1+2"] >= 1, targets


def test_evidence_boxes_map_to_the_recorded_targets(tiny, tiny_all_crop, qwen):
    for it in [*tiny[0], *tiny_all_crop, *qwen[0]]:
        per_box = [regions_for_box(b, AWARES9, it.width, it.height, rule="cover") for b in it.evidence_boxes]
        assert all(len(r) == 1 for r in per_box), (it.id, per_box)
        assert sorted(r[0] for r in per_box) == it.evidence_regions, it.id
        assert it.target_regions == (it.evidence_regions if it.needs_crop else [])
        for b in it.evidence_boxes:
            assert 0 <= b[0] < b[2] <= it.width and 0 <= b[1] < b[3] <= it.height


def test_evidence_boxes_hold_the_drawn_evidence(tiny, qwen):
    """Every evidence box has ink in it, and a code field's digits are drawn at the recorded digit height."""
    checked_height = 0
    for items, images in (tiny, qwen):
        for it in items:
            img = images.get(it.id)
            if img is None:
                continue
            for b in it.evidence_boxes:
                lo, hi = img.crop(b).convert("L").getextrema()
                assert hi - lo > 80, (it.id, b)  # text or an object on its background, not an empty patch
            if it.template == "doc-tiny-field":
                code_w, code_h, _, _ = text_box(it.answers[0], it.font_size)
                b = it.evidence_boxes[0]  # a colour swatch, then the code: look at the code's columns only
                crop = img.crop((b[2] - code_w, b[1], b[2], b[3])).convert("L")
                w, h = crop.size
                dark = [y for y in range(h) if min(crop.getpixel((x, y)) for x in range(w)) < 200]
                span = max(dark) - min(dark) + 1  # rows holding the code's dark digits
                assert span == pytest.approx(code_h, abs=1), it.id
                assert 0.85 * it.digit_px <= span <= it.digit_px + 1, it.id  # some digits are shorter than 0-9
                checked_height += 1
    assert checked_height >= 3


# --- labels ---------------------------------------------------------------------------------------------------


def test_label_mix_is_near_the_parameter(tiny):
    items = tiny[0]
    share = sum(not it.needs_crop for it in items) / len(items)
    assert abs(share - 0.78) < 0.06, share
    items = _items(BenchConfig(profile="tiny", lowres_share=0.4, kinds={"scene": 1.0}), 80)[0]
    assert abs(sum(not it.needs_crop for it in items) / 80 - 0.4) < 0.12


def test_label_follows_the_rendered_text_size(tiny, qwen):
    for items, profile in ((tiny[0], get_profile("tiny")), (qwen[0], get_profile("qwen2.5-vl"))):
        thr, m = profile.threshold_px, profile.margin
        for it in items:
            scales = view_scales(profile, it.width, it.height)
            assert it.digit_px == digit_height(it.font_size)
            assert it.digit_px_lowres == pytest.approx(it.digit_px * scales.lowres, abs=1e-3)
            assert it.digit_px_capped == pytest.approx(it.digit_px * scales.full, abs=1e-3)
            assert it.needs_crop == (it.digit_px_lowres < thr)
            if it.needs_crop:  # unreadable at low res, readable in its crop, both with the margin
                assert it.digit_px_lowres < thr / m and it.digit_px_crop >= thr * m
            else:
                assert it.digit_px_lowres >= thr * m
    # the question does not tell: templates occur with both labels
    by_template: dict[str, set[bool]] = {}
    for it in tiny[0]:
        by_template.setdefault(it.template, set()).add(it.needs_crop)
    both = [t for t, labels in by_template.items() if labels == {True, False}]
    assert len(both) >= 6, by_template


def test_sizes_span_the_cap_and_answers_fit_the_profile(tiny, qwen):
    cap = get_profile("tiny").max_pixels
    items = tiny[0]
    assert all(it.above_cap == (it.width * it.height > cap) for it in items)
    assert any(it.above_cap for it in items) and any(not it.above_cap for it in items)
    assert any(it.above_cap and it.needs_crop and not it.readable_in_capped_full for it in items)
    assert min(max(it.width, it.height) for it in items) < 448 < max(max(it.width, it.height) for it in items)
    assert len({it.aspect for it in items}) >= 5
    vocab = {"red", "green", "blue", "yellow", "purple", "orange"}
    for it in items:  # what the tiny model can say: codes, colour words, small counts
        assert it.answers[0].isdigit() or it.answers[0] in vocab, it.answers
    q = qwen[0]
    assert any(it.above_cap for it in q) and {it.benchmark for it in q} == {"document", "chart", "scene"}
    assert {"anls", "exact", "relaxed"} <= {it.metric for it in q}


def test_impossible_settings_fail_with_a_clear_error():
    with pytest.raises(ValueError, match="unknown benchmark profile 'nope'"):
        get_profile("nope")
    with pytest.raises(GenerationError, match="lower the threshold"):
        generate_item(BenchConfig(profile="tiny", threshold_px=300, max_attempts=5), "test", 0)
    with pytest.raises(GenerationError, match="lower the threshold"):  # fits the size, but no layout does
        generate_item(BenchConfig(profile="tiny", threshold_px=30, max_attempts=3), "test", 0)


# --- loading and running --------------------------------------------------------------------------------------


def test_items_load_with_the_eval_harness(tmp_path):
    path = write_split(tmp_path / "test", BenchConfig(profile="tiny"), "test", 6)
    evals = load_eval_items(path)
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e.id for e in evals] == [r["id"] for r in raw]
    for e, r in zip(evals, raw):
        assert Path(e.image).is_file() and Image.open(e.image).size == (r["width"], r["height"])
        assert e.benchmark == r["benchmark"] and e.metric == r["metric"] and e.answers == r["answers"]
        assert e.needs_crop == r["needs_crop"] and e.target_regions == r["target_regions"]
    settings = json.loads((tmp_path / "test" / "settings.json").read_text())
    assert settings["config"]["profile"] == "tiny" and settings["profile"]["max_pixels"] == 448 * 448


def test_interval_math_on_known_values():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert t_value(4) == pytest.approx(2.7764, abs=2e-3) and t_value(30) == pytest.approx(2.0423, abs=1e-4)
    lo, hi = t_interval([1, 2, 3, 4, 5])  # mean 3, sd 1.5811, t(4) 2.7764 -> +-1.9632
    assert (lo, hi) == (pytest.approx(1.0368, abs=3e-3), pytest.approx(4.9632, abs=3e-3))


def _scripted_model(items, wrong: set[str], cap: int = 448 * 448):
    """Answers every item from its record: requests exactly its target crops, gets ``wrong`` items wrong."""
    from awares_tool.episode.episode import first_view_size

    by_key = {}
    for it in items:  # the first view: the low-res one (half of the capped full view), or the capped full view
        by_key[(it.question, *first_view_size((it.width, it.height), model_max_pixels=cap))] = it
        by_key[(it.question, *first_view_size((it.width, it.height), mode="fullres", model_max_pixels=cap))] = it

    def reply(messages):
        user = next(m for m in messages if m.role == "user")
        it = by_key[(user.text_content.strip(), *user.images[0].size)]
        answer = "wrong" if it.id in wrong else it.answers[0]
        protocol = messages[0].role == "system"
        if protocol and it.needs_crop and not any(m.role == "assistant" for m in messages):
            return "GET_CROPS: [" + ", ".join(f"'{r}'" for r in it.target_regions) + "]"
        return answer

    return reply


def test_run_reports_intervals_and_the_oracle_rtr(tmp_path):
    """A scripted model that asks for exactly the target crops: RTR equals the oracle's, 8/10 -> Wilson."""
    cfg = BenchConfig(profile="tiny", lowres_share=0.5, pair_share=0.3)
    path = write_split(tmp_path / "test", cfg, "test", 10)
    items = [json.loads(line) for line in path.read_text().splitlines()]
    from awares_train.bench.generator import BenchItem

    bench = [BenchItem.model_validate(r) for r in items]
    assert any(it.needs_crop for it in bench) and any(not it.needs_crop for it in bench)
    wrong = {bench[0].id, bench[3].id}
    model = ScriptedBackend(_scripted_model(bench, wrong))
    report = run_bench(tmp_path, model, ["awares", "lowres", "fullres"], out=tmp_path / "out", progress=False)
    aw = report.cell("awares")
    assert aw.n == 10 and aw.accuracy == pytest.approx(0.8)
    assert aw.accuracy_ci == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    assert aw.decision_accuracy == 1.0 and aw.decision_ci == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert aw.region_accuracy == 1.0 and aw.n_region == sum(it.needs_crop for it in bench)
    assert aw.mean_rtr == pytest.approx(report.oracle_rtr["overall"])
    assert aw.mean_rtr_ci[0] <= aw.mean_rtr <= aw.mean_rtr_ci[1]
    assert report.cell("fullres").mean_rtr == pytest.approx(1.0)
    # per kind, above / below the cap, by label; each with its own oracle
    names = {s.benchmark for s in report.summaries if s.mode == "awares"}
    assert {"overall", "needs-crop", "lowres-ok"} <= names and names & {"document", "chart", "scene"}
    counter = get_profile("qwen2.5-vl").token_family().count  # the ScriptedBackend's family
    want = [it.oracle_rtr(counter, model_max_pixels=448 * 448, crop_max_pixels=448 * 448) for it in bench if it.needs_crop]
    assert report.oracle_rtr["needs-crop"] == pytest.approx(sum(want) / len(want))
    assert report.cell("awares", "needs-crop").mean_rtr == pytest.approx(report.oracle_rtr["needs-crop"])
    out = tmp_path / "out"
    assert (out / "accuracy_vs_rtr.png").stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert "80.0 [49.0, 94.3]" in md and "oracle RTR" in md
    # the readability curve: the scripted model reads everything, so every bin of both views holds its items
    curve = {(b.mode, b.lo): b for b in report.readability}
    assert sum(b.n for b in report.readability if b.mode == "lowres") == 10
    assert all(b.mode in ("lowres", "fullres") for b in report.readability)
    low_wrong = [it for it in bench if it.id in wrong]
    assert sum((1 - b.accuracy) * b.n for b in report.readability if b.mode == "lowres") == pytest.approx(len(low_wrong))
    assert curve and "Accuracy by the digit height" in md
    assert len((out / "items.jsonl").read_text().splitlines()) == 30
    # merging runs into one table
    res = runner.invoke(app, ["report", str(out), str(out), "--out", str(tmp_path / "merged")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "merged" / "accuracy_vs_rtr.png").is_file()


@pytest.mark.slow
def test_cli_generate_and_run_with_the_embedded_model(tmp_path):
    res = runner.invoke(app, ["generate", "--out", str(tmp_path / "bench"), "--profile", "tiny", "--splits", "val,test",
                              "--n", "4"])
    assert res.exit_code == 0, res.output
    assert "4 items" in res.output
    res = runner.invoke(app, ["run", "--data", str(tmp_path / "bench"), "--modes", "awares,lowres", "--out",
                              str(tmp_path / "run"), "--limit", "3"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["n"] == 3 and report["max_pixels"] == 448 * 448
    assert report["cap_applied_by"] == "the processor's max_pixels"
    overall = [s for s in report["summaries"] if s["benchmark"] == "overall"]
    assert {s["mode"] for s in overall} == {"awares", "lowres"}
    assert all(s["accuracy_ci"] is not None and s["errors"] == 0 for s in overall)
    res = runner.invoke(app, ["show", "--data", str(tmp_path / "bench" / "val"), "--ids", "0,val-000001", "--out",
                              str(tmp_path / "show")])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "show").glob("*.png"))) == 2


def test_cli_errors_name_the_problem(tmp_path):
    res = runner.invoke(app, ["run", "--data", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "awares-bench generate" in res.output
    res = runner.invoke(app, ["generate", "--out", str(tmp_path), "--profile", "nope"])
    assert res.exit_code == 2 and "unknown benchmark profile" in res.output


def test_generator_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from awares_train.bench import BenchConfig, generate_item\n"
        "generate_item(BenchConfig(profile='tiny'), 'test', 0)\n"
        "heavy = [m for m in ('torch', 'transformers', 'numpy', 'matplotlib', 'trl') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_reader_with_the_profiles_threshold_behaves_as_the_labels_say(tmp_path):
    """A scripted reader that reads digits exactly when they are >= the threshold in the image it is sent.

    Low-res mode must then answer precisely the items labelled answerable at low res, full resolution must fail
    exactly the above-cap items whose capped full view is unreadable, and AwaRes (asking for the target crops
    when the first view is unreadable) must answer everything.
    """
    profile = get_profile("tiny")
    cfg = BenchConfig(profile="tiny", above_cap_share=0.6, lowres_share=0.5)
    path = write_split(tmp_path / "test", cfg, "test", 30)
    from awares_train.bench.generator import BenchItem

    bench = [BenchItem.model_validate_json(line) for line in path.read_text().splitlines()]
    def digest(img):
        return hashlib.sha1(img.tobytes()).hexdigest()

    by_key = {}
    for it in bench:  # the first image as the episode makes it: the low-res view, or the capped full image
        for mode in ("awares", "fullres"):
            episode = CropEpisode(path.parent / it.image, mode=mode, model_max_pixels=profile.max_pixels,
                                  max_image_pixels=profile.max_pixels)
            by_key[(it.question, digest(episode.first_view()))] = it
    cs = get_crop_set("awares9")

    def reads(it, scale):
        return it.digit_px * scale >= profile.threshold_px

    def reply(messages):
        user = next(m for m in messages if m.role == "user")
        first = user.images[0]
        it = by_key[(user.text_content.strip(), digest(first))]
        scale = first.width / it.width
        crops = [m for m in messages if m.role == "user" and m is not user and m.images]
        if crops:
            boxes = [cs.box(r, it.width, it.height) for r in it.target_regions]
            scale = min(im.width / (b[2] - b[0]) for im, b in zip(crops[-1].images, boxes))
        if reads(it, scale):
            return it.answers[0]
        if messages[0].role == "system" and not crops:
            return "GET_CROPS: [" + ", ".join(f"'{r}'" for r in it.evidence_regions) + "]"
        return "cannot read"

    report = run_bench(tmp_path, ScriptedBackend(reply), ["awares", "lowres", "fullres"], progress=False)
    n, low_ok = len(bench), sum(not it.needs_crop for it in bench)
    thr = profile.threshold_px
    capped_fail = sum(not it.readable_in_capped_full for it in bench)
    assert 0 < low_ok < n and capped_fail >= 1 and any(it.above_cap for it in bench)
    assert report.cell("lowres").accuracy == pytest.approx(low_ok / n)
    # the capped full view has no margin around the threshold, and the loop's downscale (cap_pixels) rounds a
    # little differently from the processor's smart_resize the label assumes: allow 4 % either side
    fails = round(n * (1 - report.cell("fullres").accuracy))
    assert sum(it.digit_px_capped < 0.96 * thr for it in bench) <= fails <= sum(it.digit_px_capped < 1.04 * thr for it in bench)
    assert report.cell("awares").accuracy == 1.0 and report.cell("awares").decision_accuracy == 1.0
    above = report.cell("awares", "above-cap")
    assert above.accuracy > report.cell("fullres", "above-cap").accuracy
    curve = [b for b in report.readability if b.mode == "lowres"]
    assert all(b.accuracy == (1.0 if b.lo >= profile.threshold_px else 0.0) for b in curve)
