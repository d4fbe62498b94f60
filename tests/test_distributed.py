"""The scale-out paths, run for real on CPU: SFT and GRPO in TWO processes (gloo), every shipped accelerate config.

``accelerate launch --cpu --num_processes 2`` silently starts one process (ml-stack.md §5), so SFT runs under
``torchrun --nproc_per_node 2`` and GRPO under ``accelerate launch`` with the CPU recipe of
``awares_train/configs/accelerate/cpu_2proc.yaml``; both check the world size from inside the ranks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")

WORKER = textwrap.dedent("""
    import json, os, sys
    import torch.distributed as dist
    from awares_train.sft.config import AwaresSFTConfig
    from awares_train.sft.runio import load_config, release_distributed
    from awares_train.sft.train import run_sft
    model, data, out, cfg_path = sys.argv[1:5]
    cfg = load_config(AwaresSFTConfig, cfg_path, [f"model_name_or_path={model}", f"train_data={data}",
                      f"output_dir={out}", "max_steps=2", "per_device_train_batch_size=1", "eval_fraction=0",
                      "ddp_backend=gloo"])
    run_sft(cfg)
    rank = int(os.environ["RANK"])
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump({"world": dist.get_world_size() if dist.is_initialized() else 1, "rank": rank}, fh)
    release_distributed()  # as the CLI does
""")


@pytest.mark.slow
def test_two_process_sft_world_size_is_two(tmp_path):
    from awares_train.sft.toydata import write_toy_trajectories
    from awares_train.testing.tiny_vlms import build_tiny_vlm

    model = build_tiny_vlm("qwen2.5-vl", tmp_path / "model")
    data = write_toy_trajectories(tmp_path / "data", 4, crop_share=0.5)
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    cfg = Path(__file__).resolve().parents[1] / "awares_train" / "configs" / "sft_tiny.yaml"
    out = tmp_path / "out"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_port", "29531", str(worker), str(model), str(data),
         str(out), str(cfg)], capture_output=True, text=True, timeout=900, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = sorted(json.loads(p.read_text())["rank"] for p in out.glob("rank*.json"))
    assert ranks == [0, 1]
    assert all(json.loads(p.read_text())["world"] == 2 for p in out.glob("rank*.json"))
    card = json.loads((out / "awares.json").read_text())
    assert card["training"]["world_size"] == 2
    assert (out / "adapter_model.safetensors").exists()


GRPO_WORKER = textwrap.dedent("""
    import json, os, sys
    import torch.distributed as dist
    from awares_train.grpo.config import AwaresGRPOConfig
    from awares_train.grpo.train import AwaresGRPOTrainer, run_grpo
    from awares_train.sft.runio import load_config, release_distributed
    model, data, out, cfg_path = sys.argv[1:5]
    seen = []
    orig = AwaresGRPOTrainer._generate_and_score_completions

    def spy(self, inputs):
        res = orig(self, inputs)
        seen.append({"world": self.accelerator.num_processes, "crops": self.last_batch["crops"],
                     "images": self.last_batch["num_images"]})
        return res

    AwaresGRPOTrainer._generate_and_score_completions = spy
    cfg = load_config(AwaresGRPOConfig, cfg_path, [f"model_name_or_path={model}", f"train_data={data}",
                      f"output_dir={out}", "max_steps=2", "per_device_train_batch_size=2", "num_generations=4",
                      "temperature=0.3", "ddp_backend=gloo"])
    run_grpo(cfg)
    rank = int(os.environ["RANK"])
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump({"world": dist.get_world_size() if dist.is_initialized() else 1, "rank": rank, "seen": seen}, fh)
    release_distributed()  # as the CLI does
""")


@pytest.mark.slow
def test_two_process_grpo_with_crops_through_accelerate(tmp_path):
    """GRPO under accelerate in two CPU processes: both ranks roll out, crops reach the batch, one card is written."""
    from awares_train.sft.config import AwaresSFTConfig
    from awares_train.sft.runio import load_config
    from awares_train.sft.toydata import write_toy_trajectories
    from awares_train.sft.train import run_sft
    from awares_train.testing.tiny_vlms import tiny_vlm_path

    data = write_toy_trajectories(tmp_path / "data", 8, crop_share=1.0)
    warm = tmp_path / "warm"  # a policy that emits the call, so the rollouts exercise the tool path
    run_sft(load_config(AwaresSFTConfig, "awares_train/configs/sft_tiny.yaml", [
        f"model_name_or_path={tiny_vlm_path('qwen2.5-vl')}", f"train_data={data}", f"output_dir={warm}",
        "max_steps=40", "eval_fraction=0", "learning_rate=0.005", "use_peft=false", "tool_turn_weight=1"]))
    worker = tmp_path / "grpo_worker.py"
    worker.write_text(GRPO_WORKER)
    root = Path(__file__).resolve().parents[1]
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1", "ACCELERATE_USE_CPU": "true"}
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(accelerate), "launch", "--config_file", str(root / "awares_train/configs/accelerate/cpu_2proc.yaml"),
         "--main_process_port", "29533", str(worker), str(warm), str(data), str(out),
         str(root / "awares_train/configs/grpo_tiny.yaml")],
        capture_output=True, text=True, timeout=900, env=env, cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    seen = [s for r in ranks for s in r["seen"]]
    assert seen and all(s["world"] == 2 for s in seen)
    assert sum(c for s in seen for c in s["crops"]) > 0, "no rank's policy called get_crops"
    assert all(n == 1 + c for s in seen for n, c in zip(s["images"], s["crops"]))  # crops reach the batch
    assert json.loads((out / "awares.json").read_text())["request_format"] == "tool"


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "awares_train"
                                                            / "configs" / "accelerate").glob("*.yaml")))
def test_every_shipped_accelerate_config_loads_in_accelerate(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    path = Path(__file__).resolve().parents[1] / "awares_train" / "configs" / "accelerate" / name
    cfg = load_config_from_file(str(path))
    assert cfg.num_processes >= 2 and cfg.num_machines >= 1
    if "zero" in name:
        assert cfg.distributed_type == DistributedType.DEEPSPEED
        assert cfg.deepspeed_config["zero_stage"] == int(name[len("zero")])
    else:
        assert cfg.distributed_type in (DistributedType.MULTI_GPU, DistributedType.MULTI_CPU)
    if name == "multi_node.yaml":
        assert cfg.num_machines >= 2
