"""GRPO end to end on a tiny model: SFT warm start -> GRPO with real get_crops calls whose images reach the batch."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")

from hf_fixtures import spy_on_rollouts  # noqa: E402


@pytest.mark.slow
def test_grpo_from_sft_checkpoint_with_real_crop_calls(tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    from awares_train.grpo import train as grpo_train
    from awares_train.grpo.config import AwaresGRPOConfig
    from awares_train.sft.config import AwaresSFTConfig
    from awares_train.sft.runio import load_config
    from awares_train.sft.toydata import write_toy_trajectories
    from awares_train.sft.train import run_sft
    from awares_train.testing.tiny_vlms import tiny_vlm_path

    data = write_toy_trajectories(tmp_path / "data", 8, crop_share=1.0)
    warm = tmp_path / "warm"
    # Full fine-tune warm start: a random tiny model must first learn to emit the call at all.
    run_sft(load_config(AwaresSFTConfig, "awares_train/configs/sft_tiny.yaml", [
        f"model_name_or_path={tiny_vlm_path('qwen2.5-vl')}", f"train_data={data}", f"output_dir={warm}",
        "max_steps=50", "eval_fraction=0", "learning_rate=0.005", "use_peft=false", "tool_turn_weight=1"]))
    seen = spy_on_rollouts(monkeypatch, lambda trainer: dict(trainer.last_batch))
    out = tmp_path / "grpo"
    cfg = load_config(AwaresGRPOConfig, "awares_train/configs/grpo_tiny.yaml", [
        f"model_name_or_path={warm}", f"train_data={data}", f"output_dir={out}", "max_steps=2", "temperature=0.3"])
    grpo_train.run_grpo(cfg)
    assert len(seen) == 2
    crops = [c for b in seen for c in b["crops"]]
    images = [n for b in seen for n in b["num_images"]]
    assert sum(crops) > 0, "the warm-started policy never called get_crops"
    assert all(n == 1 + c for n, c in zip(images, crops))  # low-res view + one image per crop
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "rewards/answer/mean" in r]
    for key in ("rewards/tool_cost/mean", "awares/accuracy", "awares/rtr", "awares/no_crop_share",
                "awares/crops_per_sample", "awares/collapse"):
        assert key in logged[0], key
    assert (out / "tool_call_rate.png").exists() and (out / "config.yaml").exists()
    card = json.loads((out / "awares.json").read_text())
    assert card["request_format"] == "tool" and card["training"]["rewards"]["accuracy_weight"] == 10.0
    assert os.path.exists(out / "adapter_model.safetensors")


@pytest.mark.slow
def test_rollouts_never_sample_placeholder_tokens(tmp_path, monkeypatch):
    """A policy drawn to ``<|video_pad|>`` still trains: placeholders are suppressed in every rollout.

    Without the suppression the completions here are all ``<|video_pad|>``; where such a completion also calls the
    tool, the placeholder is re-read as a video in the next turn and Qwen2.5-VL's position ids fail ("'NoneType'
    object is not an iterator"), as a 300-step bench run did at step 14.
    """
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    from transformers import AutoConfig

    from awares_train.grpo import train as grpo_train
    from awares_train.grpo.config import AwaresGRPOConfig
    from awares_train.sft.runio import load_config
    from awares_train.sft.toydata import write_toy_trajectories
    from awares_train.testing.tiny_vlms import tiny_vlm_path

    model = tiny_vlm_path("qwen2.5-vl")
    mc = AutoConfig.from_pretrained(model)
    assert {mc.image_token_id, mc.video_token_id, mc.vision_start_token_id} <= set(
        grpo_train.placeholder_token_ids(mc))
    data = write_toy_trajectories(tmp_path / "data", 4, crop_share=1.0)
    seen = spy_on_rollouts(monkeypatch, lambda trainer: (trainer.generation_config.suppress_tokens,
                                                         set(trainer.last_batch["completion_ids"].flatten().tolist())))
    cfg = load_config(AwaresGRPOConfig, "awares_train/configs/grpo_tiny.yaml", [
        f"model_name_or_path={model}", f"train_data={data}", f"output_dir={tmp_path / 'grpo'}", "max_steps=1"])
    # the user's own suppress list is kept; the bias makes <|video_pad|> the likeliest token wherever allowed
    cfg.generation_kwargs = {"suppress_tokens": [5], "sequence_bias": [[[mc.video_token_id], 50.0]]}
    grpo_train.run_grpo(cfg)
    suppressed, sampled = seen[0]
    assert {5, mc.image_token_id, mc.video_token_id, mc.vision_start_token_id} <= set(suppressed)
    assert sampled and not sampled & set(grpo_train.placeholder_token_ids(mc))
    assert (tmp_path / "grpo" / "metrics.jsonl").exists()
    vllm = SimpleNamespace(use_vllm=True, generation_kwargs={"top_k": 5})  # (a vLLM config cannot build on CPU)
    assert grpo_train.suppress_placeholder_tokens(vllm, mc) == [] and vllm.generation_kwargs == {"top_k": 5}
