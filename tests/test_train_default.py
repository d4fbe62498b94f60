"""The embedded default's recipe (benchmark + one-code task) and its shipped card, on hand-made inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from awares_train.reproduce.pipeline import CONFIGS, ReproduceConfig
from awares_train.tiny.ship import shipped_card
from awares_train.tiny.train_default import default_config, train_default


def _bench_work(tmp_path: Path) -> Path:
    work = tmp_path / "bench"
    work.mkdir()
    cfg = ReproduceConfig(dataset="bench", base=tmp_path / "base", work=work, seed=3)
    (work / "reproduce.json").write_text(cfg.model_dump_json())
    return work


def test_recipe_takes_the_benchmark_reproductions_base_and_seed_and_its_configs(tmp_path: Path) -> None:
    cfg = default_config(_bench_work(tmp_path), tmp_path / "default", n_synthetic=300, threads=1)
    assert cfg.dataset == "synthetic" and cfg.base == tmp_path / "base" and cfg.seed == 3
    assert cfg.n_train == 300 and cfg.threads == 1 and not cfg.ablations
    assert cfg.sft_config == CONFIGS / "sft_tiny_bench.yaml" and cfg.grpo_config == CONFIGS / "grpo_tiny_bench.yaml"


def test_recipe_refuses_a_benchmark_work_folder_without_trajectories(tmp_path: Path) -> None:
    bench = _bench_work(tmp_path)
    with pytest.raises(FileNotFoundError, match="no finished benchmark trajectories"):
        train_default(bench, default_config(bench, tmp_path / "default"))
    assert not (tmp_path / "default").exists()


def _report(cells: dict[str, float]) -> dict:
    fields = {"n": 10, "mean_rtr": 0.4, "crops_per_sample": 0.5, "no_crop_share": 0.5, "decision_accuracy": 1.0,
              "region_accuracy": 0.9}
    return {"data": "bench/test", "summaries": [{"mode": "awares", "benchmark": b, "accuracy": a, **fields}
                                                for b, a in cells.items()]}


def test_shipped_card_carries_both_test_splits() -> None:
    settings = {"test_font": 28, "base": "b", "work": "w", "n_train": 1200, "train_fonts": [22, 32]}
    card = shipped_card({"lowres": 0.5, "training": {"stage": "grpo"}}, _report({"overall": 0.9}), settings,
                        "grpo", [448, 448], _report({"overall": 0.4, "document": 0.6}))
    assert card["metrics"]["reproduce_eval"]["by_benchmark"]["overall"]["accuracy"] == 0.9
    bench = card["metrics"]["bench_eval"]
    assert bench["data"] == "bench/test" and bench["by_benchmark"]["document"]["accuracy"] == 0.6
    assert card["lowres"] == {"kind": "scale", "factor": 0.5} and card["training"]["n_train"] == 1200
    alone = shipped_card({"lowres": 0.5}, _report({"overall": 0.9}), settings, "grpo", [448, 448])
    assert "bench_eval" not in alone["metrics"]
    json.dumps(card)  # the card is written as JSON
