"""The GRPO completion budget holds the crops turn, and crops TRL rolls back are neither counted nor hidden (#18)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")

from hf_fixtures import spy_on_rollouts  # noqa: E402

#: Qwen2.5-VL-Instruct's hub preprocessor settings: documents of 2000x2600 are not downscaled by the processor.
REAL_QWEN25_PIXELS = {"shortest_edge": 3136, "longest_edge": 12_845_056}


@pytest.fixture(scope="module")
def real_pixels_model(tmp_path_factory):
    """The tiny Qwen2.5-VL with the real checkpoint's pixel limits (token counts as the 7B model's)."""
    import shutil

    from awares_train.testing.tiny_vlms import tiny_vlm_path

    folder = tmp_path_factory.mktemp("real-pixels") / "model"
    shutil.copytree(tiny_vlm_path("qwen2.5-vl"), folder)
    cfg = json.loads((folder / "processor_config.json").read_text())
    cfg["image_processor"]["size"] = REAL_QWEN25_PIXELS
    (folder / "processor_config.json").write_text(json.dumps(cfg))
    return folder


def _config(overrides):
    from awares_train.grpo.config import AwaresGRPOConfig
    from awares_train.sft.runio import load_config

    cpu = ["use_cpu=true", "bf16=false", "gradient_checkpointing=false", "report_to=none", "save_strategy=no",
           "output_dir=unused", "use_peft=false"]
    return load_config(AwaresGRPOConfig, "awares_train/configs/grpo_7b.yaml", cpu + overrides)


def test_shipped_7b_config_holds_the_largest_document_crops_turn(real_pixels_model):
    from awares_tool.backends.hf_processors import load_processor
    from awares_train.grpo.budget import check_completion_budget
    from awares_train.grpo.env import crop_tool_schemas

    processor = load_processor(str(real_pixels_model))
    cfg = _config([])
    budget = check_completion_budget(cfg, processor, [(2000, 2600)], tools=crop_tool_schemas())
    assert budget.crops == 2 and budget.needed <= cfg.max_completion_length == 2816
    assert budget.crop_size[0] * budget.crop_size[1] <= 1_003_520

    paper = _config(["max_completion_length=512", "crop_max_pixels=null", "max_crops=null"])
    with pytest.raises(ValueError) as err:
        check_completion_budget(paper, processor, [(2000, 2600)], tools=crop_tool_schemas())
    msg = str(err.value)
    assert "max_completion_length=512 cannot hold" in msg and "crop 'all' of a 2000x2600 image" in msg
    needed = int(msg.split("Raise max_completion_length to >= ")[1].split(",")[0])
    assert needed > 6630  # the page's 'all' crop alone is 6630 visual tokens at these pixel limits

    auto = _config(["max_completion_length=512", "completion_budget=auto"])
    check_completion_budget(auto, processor, [(2000, 2600)], tools=crop_tool_schemas())
    assert auto.max_completion_length == budget.needed


def _warm_policy(tmp_path, data, steps=40):
    from awares_train.sft.config import AwaresSFTConfig
    from awares_train.sft.runio import load_config
    from awares_train.sft.train import run_sft
    from awares_train.testing.tiny_vlms import tiny_vlm_path

    warm = tmp_path / "warm"
    run_sft(load_config(AwaresSFTConfig, "awares_train/configs/sft_tiny.yaml", [
        f"model_name_or_path={tiny_vlm_path('qwen2.5-vl')}", f"train_data={data}", f"output_dir={warm}",
        f"max_steps={steps}", "eval_fraction=0", "learning_rate=0.005", "use_peft=false", "tool_turn_weight=1"]))
    return warm


def _metrics(out):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "awares/rolled_back_crops" in r]


@pytest.mark.slow
def test_rolled_back_crops_are_logged_and_not_counted(tmp_path, monkeypatch):
    """Force a budget that cannot hold the crops turn: TRL rolls the crops back; the env must not count them."""
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    from awares_train.grpo import train as grpo_train
    from awares_train.grpo.config import AwaresGRPOConfig
    from awares_train.sft.runio import load_config
    from awares_train.sft.toydata import write_toy_trajectories

    data = write_toy_trajectories(tmp_path / "data", 8, crop_share=1.0)
    warm = _warm_policy(tmp_path, data)
    steps = spy_on_rollouts(monkeypatch, lambda t: [(env.regions, env.rolled_back) for env in t.environments])
    out = tmp_path / "grpo"
    cfg = load_config(AwaresGRPOConfig, "awares_train/configs/grpo_tiny.yaml", [
        f"model_name_or_path={warm}", f"train_data={data}", f"output_dir={out}", "max_steps=2", "temperature=0.3",
        "max_completion_length=40", "completion_budget=off"])  # the call fits, the 64-token crop turn does not
    grpo_train.run_grpo(cfg)
    envs = [env for step in steps for env in step]
    rolled = sum(r for _, r in envs)
    assert rolled > 0, "the warm-started policy never called get_crops"
    assert all(regions == [] for regions, r in envs if r)  # a rolled-back crop is not a fetched crop
    assert max(m["awares/rolled_back_crops"] for m in _metrics(out)) > 0


@pytest.mark.slow
def test_grpo_on_2000x2600_documents_with_the_7b_budget_rolls_nothing_back(tmp_path, monkeypatch, real_pixels_model):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    from awares_train.grpo.train import run_grpo
    from awares_train.sft.toydata import write_toy_trajectories

    data = write_toy_trajectories(tmp_path / "data", 4, size=2000, height=2600, crop_share=1.0)
    warm = _warm_policy(tmp_path, data, steps=30)
    out = tmp_path / "grpo"
    cfg = _config([f"model_name_or_path={warm}", f"train_data={data}", f"output_dir={out}", "max_steps=1",
                   "per_device_train_batch_size=2", "num_generations=2", "temperature=0.3", "beta=0.0",
                   "correctness=exact", "logging_steps=1", "torch_threads=2"])
    run_grpo(cfg)
    logged = _metrics(out)
    assert logged and all(m["awares/rolled_back_crops"] == 0 for m in logged)
    assert sum(m["awares/crops_per_sample"] for m in logged) > 0, "no crop was requested: nothing was tested"
    card = json.loads((out / "awares.json").read_text())
    assert card["training"]["max_completion_length"] == 2816 and card["training"]["crop_max_pixels"] == 1_003_520
