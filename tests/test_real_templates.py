"""The real checkpoints' chat templates, end to end (#18): SFT labels, GRPO, inference.

The fixtures carry the template, special tokens and pixel settings each real checkpoint ships
(`awares_train.testing.tiny_vlms.checkpoint_vlm_path`), not the tool-capable template the other tests fit. Qwen2-VL
and Qwen2.5-VL-Instruct render no tool calls: the package's `qwen-vl-tools` template is applied for them.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")

from PIL import Image  # noqa: E402

from hf_fixtures import spy_on_rollouts  # noqa: E402

from awares_tool.backends.hf_processors import load_processor  # noqa: E402
from awares_train.testing.tiny_vlms import checkpoint_vlm_path  # noqa: E402

QWEN = ["qwen2-vl", "qwen2.5-vl", "qwen3-vl"]
MODEL_TYPE = {"qwen2-vl": "qwen2_vl", "qwen2.5-vl": "qwen2_5_vl", "qwen3-vl": "qwen3_vl", "idefics3": "idefics3"}


def _sft_cfg(family, data, out, **extra):
    from awares_train.sft.config import AwaresSFTConfig
    from awares_train.sft.runio import load_config

    return load_config(AwaresSFTConfig, "awares_train/configs/sft_tiny.yaml", {
        "model_name_or_path": str(checkpoint_vlm_path(family)), "train_data": str(data), "output_dir": str(out),
        "eval_fraction": 0.0, **extra})


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    from awares_train.sft.toydata import write_toy_trajectories

    return write_toy_trajectories(tmp_path_factory.mktemp("toy") / "data", 8, crop_share=1.0)


@pytest.mark.parametrize("family", [*QWEN, "idefics3"])
def test_sft_labels_the_crop_request_with_the_real_template(family, toy_data, tmp_path):
    """The request turn is labelled with its content: the get_crops call (or, without tool support, GET_CROPS)."""
    from awares_train.sft.data import load_trajectory_dataset
    from awares_train.sft.train import build_collator, prepare_template

    processor = load_processor(str(checkpoint_vlm_path(family)))
    cfg = _sft_cfg(family, toy_data, tmp_path)
    applied = prepare_template(cfg, processor, MODEL_TYPE[family])
    assert applied == ("qwen-vl-tools" if family in ("qwen2-vl", "qwen2.5-vl") else None)
    collator = build_collator(cfg, processor)
    row = load_trajectory_dataset(toy_data)[0]
    batch = collator([row])
    labelled = batch["labels"][0][batch["labels"][0] != -100]
    text = processor.tokenizer.decode(labelled)
    region = row["target_regions"][0] if "target_regions" in row else None
    if family == "idefics3":  # no tool-capable template for this family: the paper's text protocol
        assert collator.request_format == "text" and "GET_CROPS" in text
    else:
        assert collator.request_format == "tool"
        assert '"name": "get_crops"' in text and '"regions"' in text, text
    if region:
        assert f"'{region}'" in text or f'"{region}"' in text


def test_request_format_tool_with_a_template_without_tools_fails_at_once(toy_data, tmp_path):
    from awares_train.sft.train import build_collator

    processor = load_processor(str(checkpoint_vlm_path("idefics3")))
    with pytest.raises(ValueError, match="request_format: text"):
        build_collator(_sft_cfg("idefics3", toy_data, tmp_path, request_format="tool"), processor)


@pytest.mark.slow
@pytest.mark.parametrize("family", QWEN)
def test_grpo_runs_on_the_real_template_and_crops_reach_the_next_turn(family, toy_data, tmp_path, monkeypatch):
    """#18 acceptance: with the real Qwen2.5-VL template GRPO used to refuse to start ("does not support tool
    calling"); now SFT applies the tool template, GRPO starts, runs 2 steps, and crop images reach the batch."""
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    from awares_train.grpo import train as grpo_train
    from awares_train.grpo.config import AwaresGRPOConfig
    from awares_train.sft.runio import load_config
    from awares_train.sft.train import run_sft

    warm = tmp_path / "sft"
    run_sft(_sft_cfg(family, toy_data, warm, max_steps=40, learning_rate=0.005, use_peft=False, tool_turn_weight=1))
    card = json.loads((warm / "awares.json").read_text())
    assert card["request_format"] == "tool"
    assert card["chat_template"] == ("qwen-vl-tools" if family != "qwen3-vl" else None)
    seen = spy_on_rollouts(monkeypatch, lambda trainer: dict(trainer.last_batch))
    out = tmp_path / "grpo"
    grpo_train.run_grpo(load_config(AwaresGRPOConfig, "awares_train/configs/grpo_tiny.yaml", {
        "model_name_or_path": str(warm), "train_data": str(toy_data), "output_dir": str(out), "max_steps": 2,
        "temperature": 0.3, "completion_budget": "auto"}))
    assert len(seen) == 2
    crops = [c for b in seen for c in b["crops"]]
    assert sum(crops) > 0, "the warm-started policy never called get_crops"
    assert all(n == 1 + c for b in seen for n, c in zip(b["num_images"], b["crops"]))

    from awares_tool import crop_on_demand
    from awares_tool.backends.scripted import ReplayBackend
    from awares_tool.backends.transformers import TransformersBackend

    inner = TransformersBackend(out)  # inference applies the template the card names
    assert inner.model_card.chat_template == card["chat_template"] and inner.supports_tool_images
    call = '<tool_call>\n{"name": "get_crops", "arguments": {"regions": ["3"]}}\n</tool_call>'
    res = crop_on_demand(Image.new("RGB", (224, 224), "white"), "What is the code?",
                         backend=ReplayBackend(inner, [call, "123"]))
    assert res.regions == ["3"] and res.answer == "123"
    assert [m["role"] for m in res.trace][-2] == "tool"  # the crops arrive inside the tool turn, as trained


@pytest.mark.parametrize("family", [*QWEN, "idefics3"])
def test_inference_loop_on_the_real_template_delivers_crops_where_it_can(family):
    from awares_tool import crop_on_demand
    from awares_tool.backends.scripted import ReplayBackend
    from awares_tool.backends.transformers import TransformersBackend

    inner = TransformersBackend(checkpoint_vlm_path(family), dtype="float32", device="cpu")
    assert inner.supports_tool_images == (family == "qwen3-vl")  # the others' own templates have no tool turn
    res = crop_on_demand(Image.new("RGB", (320, 240), "white"), "What is it?",
                         backend=ReplayBackend(inner, ["GET_CROPS: ['0']", "a wall"]), max_new_tokens=4)
    assert res.regions == ["0"] and res.answer == "a wall"
    crops_turn = res.trace[-2]
    assert crops_turn["role"] == "user" and [p["type"] for p in crops_turn["content"]][0] == "image"
    assert res.tokens.source == "backend" and len(res.tokens.crops) == 1
