"""SFT end to end on a tiny model: held-out loss falls, LoRA/merge/full fine-tune, run files, config loading."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")

from awares_train.sft.config import AwaresSFTConfig  # noqa: E402
from awares_train.sft.runio import load_config  # noqa: E402

TINY = "awares_train/configs/sft_tiny.yaml"


def test_config_yaml_and_overrides(tmp_path):
    cfg = load_config(AwaresSFTConfig, TINY, ["lora_r=4", "tool_turn_weight=2.5", f"output_dir={tmp_path}"])
    assert cfg.lora_r == 4 and cfg.tool_turn_weight == 2.5 and cfg.use_cpu and cfg.max_length is None
    assert cfg.remove_unused_columns is False
    with pytest.raises(ValueError, match="lora_rr"):
        load_config(AwaresSFTConfig, TINY, ["lora_rr=4"])
    with pytest.raises(ValueError):
        load_config(AwaresSFTConfig, TINY, ["request_format=json"])
    with pytest.raises(ValueError, match="invalid int value: 'four'"):  # an error, not argparse's exit
        load_config(AwaresSFTConfig, TINY, ["lora_r=four"])
    # typed by the field, not by YAML: "no" stays a string (YAML would read it as False)
    typed = load_config(AwaresSFTConfig, TINY, ["save_strategy=no", "use_peft=false", "label_names=a b",
                                                "max_train_samples=null", f"output_dir={tmp_path}"])
    assert (typed.save_strategy.value, typed.use_peft, typed.max_train_samples, typed.label_names) == (
        "no", False, None, ["a", "b"])
    as_dict = load_config(AwaresSFTConfig, TINY, {"lora_r": 3, "lowres": {"kind": "scale", "factor": 0.5},
                                                  "output_dir": str(tmp_path)})
    assert (as_dict.lora_r, as_dict.lowres, as_dict.max_steps) == (3, {"kind": "scale", "factor": 0.5}, 20)
    bad = tmp_path / "bad.yaml"
    bad.write_text("lora_rr: 4\nuse_cpu: true\n")
    with pytest.raises(ValueError, match="lora_rr.*lora_r"):
        load_config(AwaresSFTConfig, bad)
    seven = load_config(AwaresSFTConfig, "awares_train/configs/sft_7b.yaml", [f"output_dir={tmp_path}", "bf16=false"])
    assert (seven.lora_r, seven.learning_rate, seven.lr_scheduler_type.value, seven.num_train_epochs,
            seven.tool_turn_weight) == (8, 1e-4, "cosine", 2, 5.0)


def test_cli_set_errors_name_the_field():
    from typer.testing import CliRunner

    from awares_train.cli import app

    res = CliRunner().invoke(app, ["sft", "--config", TINY, "--set", "lora_rr=4"])
    assert res.exit_code == 2 and "lora_r" in res.output
    res = CliRunner().invoke(app, ["sft", "--config", TINY, "--set", "max_steps=many"])
    assert res.exit_code == 2 and "invalid int value: 'many'" in res.output


def test_lora_targets_and_freezing():
    import re

    from awares_train.sft.model import apply_freezing, lora_target_regex
    from awares_train.testing.tiny_vlms import tiny_vlm_path
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_path("qwen2.5-vl"))
    names = [n for n, _ in model.named_modules()]
    lm = [n for n in names if re.fullmatch(lora_target_regex("language"), n)]
    both = [n for n in names if re.fullmatch(lora_target_regex("language+vision"), n)]
    assert lm and all("language_model" in n for n in lm)
    assert any("visual" in n for n in both) and set(lm) < set(both)
    apply_freezing(model, vision=True, projector=False, language=False)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all("visual" in n and "merger" not in n for n in frozen)
    assert any(p.requires_grad for n, p in model.named_parameters() if "merger" in n)


@pytest.mark.slow
def test_sft_lowers_heldout_loss_and_writes_run_files(tmp_path):
    from awares_train.sft.toydata import write_toy_trajectories
    from awares_train.sft.train import run_sft
    from awares_train.testing.tiny_vlms import tiny_vlm_path
    from transformers import AutoModelForImageTextToText

    train = write_toy_trajectories(tmp_path / "train", 12, crop_share=0.5)
    held = write_toy_trajectories(tmp_path / "val", 4, crop_share=0.5, split="val")
    out = tmp_path / "out"
    cfg = load_config(AwaresSFTConfig, TINY, [
        f"model_name_or_path={tiny_vlm_path('qwen2.5-vl')}", f"train_data={train}", f"eval_data={held}",
        f"output_dir={out}", "max_steps=12", "learning_rate=0.01", "merge_and_save=true"])
    run_sft(cfg)
    card = json.loads((out / "awares.json").read_text())
    assert card["metrics"]["eval_loss_after"] < card["metrics"]["eval_loss_before"]
    assert set(card) >= {"format", "family", "crop_set", "lowres", "system_prompt", "crops_turn_text",
                         "request_format"}
    assert card["family"] == "qwen2.5-vl" and card["request_format"] == "tool"
    assert card["lowres"] == {"kind": "scale", "factor": 0.5}
    # the toy trajectories use the protocol's crops wording, so the card must not name another one
    assert card["crops_turn_text"] is None
    assert (out / "config.yaml").exists() and (out / "README.md").exists()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in rows) and any("eval_loss" in r for r in rows)
    # the held-out loss before training (logged in the state train() replaces) stays first
    assert rows[0]["step"] == 0 and rows[0]["eval_loss"] == card["metrics"]["eval_loss_before"]
    assert rows[-1]["eval_loss"] == card["metrics"]["eval_loss_after"]
    assert (out / "adapter_model.safetensors").exists()
    merged = AutoModelForImageTextToText.from_pretrained(out / "merged")
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_sft_resumes_from_a_checkpoint_exactly(tmp_path):
    """Stopped after 3 steps and resumed to 6, a run logs the same losses as one that ran 6 steps straight."""
    from awares_train.sft.toydata import write_toy_trajectories
    from awares_train.sft.train import run_sft
    from awares_train.testing.tiny_vlms import tiny_vlm_path

    train = write_toy_trajectories(tmp_path / "train", 12, crop_share=0.5)

    def run(out, steps, resume=None):
        cfg = load_config(AwaresSFTConfig, TINY, [
            f"model_name_or_path={tiny_vlm_path('qwen2.5-vl')}", f"train_data={train}", f"output_dir={out}",
            f"max_steps={steps}", "learning_rate=0.01", "logging_steps=1", "save_strategy=steps", "save_steps=3",
            "eval_fraction=0"] + ([f"resume_from_checkpoint={resume}"] if resume else []))
        run_sft(cfg)
        return {r["step"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                if "loss" in r}

    straight = run(tmp_path / "a", 6)
    run(tmp_path / "b", 3)
    resumed = run(tmp_path / "b", 6, resume=tmp_path / "b" / "checkpoint-3")
    assert sorted(straight) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        assert resumed[step] == pytest.approx(straight[step], rel=1e-4), step
    # metrics.jsonl is the trainer's log history: what the last checkpoint holds, then the end-of-run summary
    history = json.loads((tmp_path / "b" / "checkpoint-6" / "trainer_state.json").read_text())["log_history"]
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert rows[:-1] == history and "train_loss" in rows[-1]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 6]
    # the weighted loss runs through TRL's compute_loss, so TRL's own metrics are logged with it
    assert all({"entropy", "num_tokens", "mean_token_accuracy"} <= set(r) for r in rows[:-1])
