"""The tiny model's training entry points run end to end, time-boxed to seconds, and resume.

``train_base`` (stage A dense pre-training, stage B VQA) made the shipped tiny-base and ``train_bench_base``
adapts it to awares-bench; here each runs a few steps from random weights into a temporary folder, so a
change to the stages' loops, checkpoints or exports is caught before a real (hour-long) run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow


MODELS = Path(__file__).resolve().parents[1] / "awares_tool" / "models"


def test_train_base_writes_a_model_and_resumes(tmp_path):
    from awares_train.tiny import train_base
    from awares_train.tiny.common import load_ckpt

    work, base = tmp_path / "runs-base", tmp_path / "tiny-base"
    common = ["--work", str(work), "--eval-n", "2", "--threads", "1"]
    train_base.main(["--out", str(base), "--a-steps", "3", "--b-minutes", "0.1", *common])
    card = json.loads((base / "awares.json").read_text())
    assert (base / "model.safetensors").exists() and card["training"]["stage"] == "base"
    assert card["training"]["stage_a_steps"] == 3  # a step budget ends at exactly that step
    for key in ("code@crop", "code@low", "other@low", "where@low"):  # the base's eval sets, incl. grounding
        assert 0.0 <= card["metrics"]["heldout_test_font28"][key] <= 1.0
    b = load_ckpt(work / "stageB.pt")
    assert b["done"] and b["step"] >= 1 and b["history"]

    # A longer time box resumes stage B from its checkpoint instead of starting again.
    longer = f"{b['elapsed'] / 60 + 0.05:.3f}"
    train_base.main(["--out", str(base), "--stages", "B", "--b-minutes", longer, *common])
    assert f"stage B resumed at step {b['step']} " in (work / "train_base.log").read_text()
    b2 = load_ckpt(work / "stageB.pt")
    assert b2["step"] > b["step"]
    train_base.main(["--out", str(base), "--stages", "B", "--b-steps", str(b2["step"] + 3), *common])
    assert load_ckpt(work / "stageB.pt")["step"] == b2["step"] + 3
    assert json.loads((base / "awares.json").read_text())["training"]["stage_b_steps"] == b2["step"] + 3


def test_train_bench_base_writes_a_capped_model_and_resumes(tmp_path, capsys):
    """The base adaptation to awares-bench: a few small steps, the model folder, the checkpoint, a resume."""
    from awares_train.tiny import train_bench_base
    from awares_train.tiny.common import load_ckpt

    work, out = tmp_path / "work", tmp_path / "bench-base"
    common = ["--out", str(out), "--work", str(work), "--eval-n", "4", "--final-n", "4", "--old-eval-n", "2",
              "--threads", "1", "--plan", "crop:2,low:2,where:2,quarter:2,request:2,call:2,full:1,old:2"]
    train_bench_base.main([*common, "--minutes", "0.15"])
    card = json.loads((out / "awares.json").read_text())
    assert card["training"]["stage"] == "bench-base" and card["max_pixels"] == 448 * 448
    assert card["training"]["stage_a_minutes"] > 0  # the shipped base's own record is kept
    test = card["metrics"]["heldout_bench_test"]
    for key in ("crop", "low@ok", "low@small", "full@ok", "where", "quarter", "request", "call", "crop@document"):
        assert 0.0 <= test[key] <= 1.0
    assert {c["view"] for c in card["metrics"]["digit_curve"]} == {"crop", "low", "full"}
    processor = json.loads((out / "processor_config.json").read_text())["image_processor"]
    assert processor["size"]["longest_edge"] == 448 * 448  # the model sees what the bench profile assumes
    st = load_ckpt(work / "stage_bench.pt")
    assert st["done"] and st["step"] >= 1 and st["history"][0]["step"] == 0 and st["record"]["bench_test"]

    # A longer time box resumes from the checkpoint; the same one finds the stage done and changes nothing.
    longer = ["--minutes", f"{st['elapsed'] / 60 + 0.05:.3f}"]
    train_bench_base.main([*common, *longer])
    assert f"bench stage resumed at step {st['step']} " in (work / "train_bench_base.log").read_text()
    again = load_ckpt(work / "stage_bench.pt")
    assert again["step"] > st["step"]
    train_bench_base.main([*common, *longer])
    assert load_ckpt(work / "stage_bench.pt")["step"] == again["step"]
    assert "bench stage already done" in (work / "train_bench_base.log").read_text()
    # A step budget ends at exactly that step, whatever the wall time (make bench-base's phases use one).
    budget = again["step"] + 2
    train_bench_base.main([*common, "--steps", str(budget)])
    again = load_ckpt(work / "stage_bench.pt")
    assert again["done"] and again["step"] == budget
    assert json.loads((out / "awares.json").read_text())["training"]["stage_bench"]["steps"] == budget

    # The same work folder with another plan, or fewer steps than its checkpoint made, is another run: refused,
    # and the checkpoint is left as it was (make bench-base rerun after a recipe change must not reuse a phase).
    for other, says in ((["--plan", "where:2", "--steps", str(budget)], "started with other settings (plan: "),
                        (["--steps", str(budget - 1)], f"is at step {budget}, past the {budget - 1} steps asked")):
        with pytest.raises(SystemExit) as stop:
            train_bench_base.main([*common, *other])
        assert stop.value.code == 2 and says in capsys.readouterr().err
        assert load_ckpt(work / "stage_bench.pt")["step"] == budget
    assert "plan" in json.loads((work / "run.json").read_text())

    # A curriculum's next phase starts from this model; its card lists both phases, oldest first.
    # (Its items drawn ahead by a worker process, as on a GPU.)
    nxt = tmp_path / "phase-2"
    train_bench_base.main(["--base", str(out), "--out", str(nxt / "model"), "--work", str(nxt), "--eval-n", "4",
                           "--final-n", "0", "--old-eval-n", "0", "--threads", "1", "--plan", "where:2",
                           "--minutes", "0.05", "--workers", "1"])
    # (The shipped base is itself such a curriculum's model: its phases come first.)
    shipped = len(json.loads((MODELS / "tiny-base" / "awares.json").read_text())["training"].get("bench_phases", []))
    phases = json.loads((nxt / "model" / "awares.json").read_text())["training"]["bench_phases"]
    assert len(phases) == shipped + 2
    assert [p["plan"] for p in phases[-2:]] == [card["training"]["stage_bench"]["plan"], [["where", 2]]]
    assert phases[-2]["steps"] == again["step"] and phases[-1]["steps"] >= 1
    assert phases[-1]["device"] == "cpu"  # reports name the minutes a phase spent on a GPU


def test_items_drawn_ahead_by_workers_are_the_steps_drawn_inline():
    """Worker processes change when a step's items are drawn, never which: a resumed or GPU run sees the same data."""
    from awares_train.tiny.stage_bench import BenchStageConfig, _steps

    cfg = BenchStageConfig(plan=[("request", 2), ("crop", 1), ("old", 2)])

    def take(workers: int) -> list:
        steps = _steps(cfg, 4, workers)
        out = [next(steps) for _ in range(4)]
        steps.close()
        return [(s, kind, [(e.conv, [im.tobytes() for im in e.images]) for e in exs]) for s, kind, exs in out]

    inline = take(0)
    assert [(s, k) for s, k, _ in inline] == [(4, "crop"), (5, "old"), (6, "request"), (7, "crop")]
    assert take(2) == inline


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_train_bench_base_on_a_missing_gpu_says_so(tmp_path, capsys):
    from awares_train.tiny import train_bench_base

    with pytest.raises(SystemExit):
        train_bench_base.main(["--out", str(tmp_path / "m"), "--work", str(tmp_path / "w"), "--device", "cuda"])
    assert "torch sees no GPU here" in capsys.readouterr().err


def test_budget_counts_steps_when_given_else_wall_time():
    from awares_train.tiny.common import Budget, Clock

    fresh, late = Clock(), Clock(elapsed=90.0)
    steps = Budget(minutes=1.0, steps=10)  # steps win: the wall time does not matter
    assert steps.fraction(5, late) == 0.5 and not steps.done(9, late) and steps.done(10, fresh)
    box = Budget(minutes=1.0)  # a wall-clock box: the step count does not matter
    assert box.done(0, late) and not box.done(10_000, fresh)
    assert box.fraction(0, late) == pytest.approx(1.5, abs=0.01)
