"""Two SFT steps in TWO processes on CPU (gloo): the distributed path really runs with world size 2.

``accelerate launch --cpu --num_processes 2`` silently starts one process (ml-stack.md §5), so this uses
``torchrun --nproc_per_node 2`` and checks the world size from inside both ranks and from the model card.
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
    from awares_train.sft.runio import load_config
    from awares_train.sft.train import run_sft
    model, data, out, cfg_path = sys.argv[1:5]
    cfg = load_config(AwaresSFTConfig, cfg_path, [f"model_name_or_path={model}", f"train_data={data}",
                      f"output_dir={out}", "max_steps=2", "per_device_train_batch_size=1", "eval_fraction=0",
                      "ddp_backend=gloo"])
    run_sft(cfg)
    rank = int(os.environ["RANK"])
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump({"world": dist.get_world_size() if dist.is_initialized() else 1, "rank": rank}, fh)
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
