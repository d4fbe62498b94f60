"""The crop environment (crops from the original image, bookkeeping), reward wiring, collapse monitor, plot."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from PIL import Image

from awares_tool.errors import RequestError, UnknownRegionError
from awares_train.grpo.env import CropEnv, make_env_factory
from awares_train.grpo.monitor import CollapseMonitor, plot_tool_call_rate


@pytest.fixture()
def row(tmp_path):
    full = Image.new("RGB", (400, 200), "white")
    full.paste((255, 0, 0), (300, 150, 400, 200))  # red in the bottom-right quarter only
    full.save(tmp_path / "full.png")
    low = full.resize((200, 100))
    low.save(tmp_path / "low.png")
    return {"source_image": str(tmp_path / "full.png"), "images": [str(tmp_path / "low.png")], "label": "crop"}


def test_env_crops_from_original(row):
    env = CropEnv()
    env.reset(**row)
    assert env.needs_crop and not env.requested
    parts = env.get_crops(["3"])
    crop = parts[0]["image"]
    assert crop.size == (200, 100)  # native resolution of the original, not the low-res view
    assert crop.getpixel((150, 75)) == (255, 0, 0)
    assert parts[-1]["type"] == "text" and "3" in parts[-1]["text"]
    assert env.regions == ["3"] and env.area_fraction == pytest.approx(0.25)
    assert env.rtr == pytest.approx(0.25 + 0.25)  # pixel ratio without a token counter
    with pytest.raises(RequestError):
        env.get_crops(["0"])  # one request round only
    env.reset(**row)
    assert env.regions == [] and env.area_fraction == 0.0
    with pytest.raises(UnknownRegionError):
        env.get_crops(["nine"])


def test_env_delivers_crops_with_the_model_card_wording(row):
    """Rollouts must word the crops turn as SFT trained it (the model card's template), else the protocol's."""
    from awares_tool.protocol import crops_turn_text

    env = make_env_factory(crops_template="Crop {regions} at full resolution. Answer the question.")()
    env.reset(**row)
    assert env.get_crops(["3", "0"])[-1]["text"] == "Crop 3, 0 at full resolution. Answer the question."
    env = make_env_factory()()
    env.reset(**row)
    assert env.get_crops(["3"])[-1]["text"] == crops_turn_text(["3"], env._crop_set)


def test_env_token_counter(row):
    env = CropEnv(count_tokens=lambda w, h: (w // 100) * (h // 100) or 1)
    env.reset(**row)
    env.get_crops(["5"])  # top half: 400x100 -> 4 tokens; full 400x200 -> 8; low 200x100 -> 2
    assert env.rtr == pytest.approx((2 + 4) / 8)
    assert env.crop_rtr == pytest.approx(0.5)


def test_reward_funcs_from_config(row):
    from awares_train.grpo.rewards import build_reward_funcs

    cfg = SimpleNamespace(judge=None, embedding_model=None, correctness="exact", accuracy_metric="exact",
                          penalty_warmup_steps=0, missed_crop_cost=2.0, request_cost=0.25, area_cost=0.01,
                          accuracy_weight=10.0, tool_cost_weight=1.0, token_cost_weight=0.5, format_weight=0.0)
    funcs, weights = build_reward_funcs(cfg)
    assert [f.__name__ for f in funcs] == ["answer", "tool_cost", "token_cost"] and weights == [10.0, 1.0, 0.5]
    envs = [CropEnv(), CropEnv(), CropEnv()]
    for e in envs:
        e.reset(**row)
    envs[1].get_crops(["3"])
    envs[2].get_crops(["5", "6"])
    logged: dict[str, list[float]] = {}
    kw = dict(environments=envs, trainer_state=SimpleNamespace(global_step=5),
              log_metric=lambda k, v: logged.setdefault(k, []).append(v))
    comps = [[{"role": "assistant", "content": "7"}]] * 3
    answers = funcs[0](comps, answers=[["7"]] * 3, **kw)
    costs = funcs[1](comps, **kw)
    tokens = funcs[2](comps, **kw)
    assert answers == [1.0, 1.0, 1.0]
    assert costs[0] == -2.0 and costs[1] > costs[2]  # more area, same answer -> more cost
    assert tokens[0] == 0.0 and tokens[1] > tokens[2]
    assert sum(logged["awares/tool_call_rate"]) == 2 and sum(logged["awares/crops_per_sample"]) == 3
    cfg.penalty_warmup_steps = 10
    assert build_reward_funcs(cfg)[0][1](comps, **kw)[0] == pytest.approx(-1.0)  # half-way through warm-up


def test_collapse_monitor_band_and_patience():
    m = CollapseMonitor(low=0.1, high=0.9, patience=3)
    assert [m.update(r) for r in (0.5, 1.0, 1.0, 1.0, 0.5)] == [False, False, False, True, False]
    with pytest.raises(ValueError):
        CollapseMonitor(low=0.9, high=0.1)


def test_collapse_callback_flags_logs(tmp_path):
    pytest.importorskip("transformers")
    from awares_train.grpo.monitor import make_collapse_callback

    from transformers import TrainerState

    cb = make_collapse_callback(CollapseMonitor(low=0.1, high=0.9, patience=2))
    state, flags = TrainerState(), []
    for step, rate in enumerate((0.0, 0.0, 0.5), 1):
        logs = {"awares/tool_call_rate": rate}
        state.log_history.append({**logs, "step": step})  # Trainer.log records its row before callbacks run
        cb.on_log(None, state, None, logs=logs)
        flags.append(logs["awares/collapse"])
    assert flags == [0.0, 1.0, 0.0]
    assert [row["awares/collapse"] for row in state.log_history] == flags  # metrics.jsonl is written from these


def test_plot_tool_call_rate(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps({"step": s, "awares/tool_call_rate": r, "awares/collapse": float(r == 0)})
                              for s, r in enumerate([0.5, 0.2, 0.0, 0.0])) + "\n")
    out = plot_tool_call_rate(path, tmp_path / "rate.png", low=0.05, high=0.95)
    assert out.exists() and Image.open(out).size[0] > 100


def test_grpo_configs_load_with_paper_settings(tmp_path):
    pytest.importorskip("trl")
    from awares_train.grpo.config import AwaresGRPOConfig
    from awares_train.sft.runio import load_config

    cfg = load_config(AwaresGRPOConfig, "awares_train/configs/grpo_7b.yaml",
                      [f"output_dir={tmp_path}", "bf16=false", "use_cpu=true"])
    assert (cfg.num_generations, cfg.learning_rate, cfg.beta, cfg.temperature, cfg.max_completion_length,
            cfg.lora_r, cfg.accuracy_weight, cfg.max_tool_calling_iterations) == (8, 5e-5, 0.05, 1.0, 2816, 8, 10.0, 1)
    with pytest.raises(ValueError):
        load_config(AwaresGRPOConfig, None, [f"output_dir={tmp_path}", "correctness=vibes", "use_cpu=true"])
