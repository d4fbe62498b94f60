"""The reproduction pipeline (``make reproduce``): report helpers on hand-made inputs, and one quick
end-to-end run of every stage (data, trajectories, SFT, GRPO, evaluation, report) on the shipped base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from awares_train.eval.harness import ModeSummary
from awares_train.reproduce.report import base_model_summary, check_targets, oracle_rtr


def _records(tmp_path: Path, targets: list[list[str]]) -> Path:
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps({"width": 448, "height": 448, "target_regions": t}) + "\n" for t in targets))
    return path


def test_oracle_rtr_counts_low_res_view_plus_target_crops(tmp_path: Path) -> None:
    # 448x448 -> 256 tokens; half-scale view 64; a quadrant crop 64: (64 + 64) / 256 and 64 / 256.
    assert oracle_rtr(_records(tmp_path, [["3"], []])) == pytest.approx((0.5 + 0.25) / 2)
    # a half-image region (5 = top half, 448x224) is 128 tokens
    assert oracle_rtr(_records(tmp_path, [["5"]])) == pytest.approx((64 + 128) / 256)


def _cell(label: str, mode: str, acc: float, rtr: float) -> ModeSummary:
    return ModeSummary(label=label, mode=mode, benchmark="overall", n=10, accuracy=acc, mean_rtr=rtr,
                       mean_pixel_ratio=rtr, crops_per_sample=0.0, no_crop_share=1.0, mean_rounds=1.0,
                       mean_latency_s=0.1, p50_latency_s=0.1, errors=0)


def test_check_targets() -> None:
    cells = {("base", "fullres"): _cell("base", "fullres", 0.80, 1.0),
             ("base", "lowres"): _cell("base", "lowres", 0.40, 0.25),
             ("sft", "awares"): _cell("sft", "awares", 0.75, 0.45),
             ("grpo", "awares"): _cell("grpo", "awares", 0.795, 0.38)}
    t = check_targets(cells)
    assert all(v["holds"] for v in t.values())
    cells[("grpo", "awares")] = _cell("grpo", "awares", 0.70, 0.50)
    t = check_targets(cells)
    assert not t["grpo_within_1pt_of_fullres_at_rtr_0.40"]["holds"]
    assert t["grpo_within_1pt_of_fullres_at_rtr_0.40"]["gap_points"] == pytest.approx(10.0)
    assert not t["grpo_better_than_sft_on_accuracy_or_rtr"]["holds"]


def test_base_model_summary_reads_the_training_record_of_a_base_trained_here() -> None:
    card = {"training": {"stage": "base", "stage_a_minutes": 31.0, "stage_b_minutes": 80.5, "threads": 2},
            "metrics": {"font_curve": [], "heldout_test_font28": {"code@crop": 0.78, "where@low": 0.49}}}
    assert base_model_summary(card) == {"training_minutes": {"a": 31.0, "b": 80.5},
                                        "heldout": {"code@crop": 0.78, "where@low": 0.49}}
    # a pretrained base (no record of its own training) leaves the section out
    assert base_model_summary({"family": "qwen2.5-vl"}) == {"training_minutes": {}, "heldout": {}}


@pytest.mark.slow
def test_quick_reproduction_runs_every_stage(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    from awares_train.reproduce.cli import QUICK
    from awares_train.reproduce.pipeline import ReproduceConfig, run_reproduction

    cfg = ReproduceConfig(**QUICK, work=tmp_path / "work", docs=tmp_path / "docs", ablations=False, threads=1)
    results = run_reproduction(cfg)
    labels = {(s["label"], s["mode"]) for s in results["summaries"] if s["benchmark"] == "overall"}
    assert labels == {("base", "fullres"), ("base", "lowres"), ("base", "full_on_request"), ("sft", "awares"),
                      ("grpo", "awares")}
    assert (cfg.work / "trajectories" / "data.jsonl").stat().st_size > 0
    for run in ("sft", "grpo"):  # full models with their model cards, loadable by the inference loop
        card = json.loads((cfg.work / run / "awares.json").read_text())
        assert card["request_format"] == "tool"
    md = (cfg.docs / "results.md").read_text()
    assert "| base | fullres | overall | 8 |" in md and "Oracle RTR" in md
    # the shipped base records its own training from random weights: the whole recipe's time is stated
    shipped = json.loads((Path(cfg.base) / "awares.json").read_text())["training"]
    base_min = shipped["stage_a_minutes"] + shipped["stage_b_minutes"]
    assert f"trained from random weights in **{base_min:.1f} min**" in md
    whole = base_min + sum(results["stage_seconds"].values()) / 60
    assert f"whole recipe from scratch: **{whole:.1f} min**" in md
    assert (cfg.docs / "accuracy_vs_rtr.png").read_bytes()[:4] == b"\x89PNG"
    assert set(results["stage_seconds"]) >= {"data", "trajectories", "sft", "grpo", "eval:base", "eval:grpo"}
    # a rerun resumes: every stage is found done and only the report is rewritten
    again = run_reproduction(cfg)
    assert again["stage_seconds"] == results["stage_seconds"]
    # the GRPO model ships as an embedded-style model folder: inference files and the measured figures
    from awares_tool import crop_on_demand
    from awares_tool.demo import demo_assets
    from awares_train.tiny.ship import INFERENCE_FILES, ship_model

    card = ship_model(cfg.work, tmp_path / "shipped")
    assert sorted(p.name for p in (tmp_path / "shipped").iterdir()) == sorted([*INFERENCE_FILES, "awares.json"])
    overall = card["metrics"]["reproduce_eval"]["by_benchmark"]["overall"]
    grpo = next(s for s in results["summaries"] if s["label"] == "grpo" and s["benchmark"] == "overall")
    assert overall["n"] == 8 and overall["accuracy"] == grpo["accuracy"]
    assert card["lowres"] == {"kind": "scale", "factor": 0.5} and card["training"]["run"] == "grpo"
    image, questions = demo_assets()
    res = crop_on_demand(image, questions[0]["question"], backend=f"transformers:{tmp_path / 'shipped'}",
                         max_new_tokens=8)
    assert res.error is None and res.tokens.spent > 0 and res.trace[0]["role"] == "system"
