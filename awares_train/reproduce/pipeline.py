"""Run the reproduction stage by stage; every stage is skipped when its output already exists (resumable).

A rerun must ask for the same run: the work folder records the base and settings (:func:`work_identity`) and
refuses others (:class:`awares_train.work_folder.WorkFolderMismatchError`).

Two data sets (:mod:`awares_train.reproduce.run` picks one): ``bench`` (default: the ``awares-bench`` needle benchmark, ``tiny`` profile; stages in
:mod:`awares_train.reproduce.bench`) and ``synthetic`` (the first reproduction's one-code task). The synthetic
stages and where they write (under ``work``):

1. ``data/train``, ``data/test``: synthetic high-resolution VQA records (train fonts vary, test font fixed).
2. ``trajectories``: ``build_dataset`` with the base model answering low-res and full-res, the exact-match
   judge and the data set's evidence boxes as grounding (``cover`` rule: the smallest crops holding the box).
3. ``sft``: ``awares-train sft`` (subprocess, so its progress bar and logs are the CLI's own).
4. ``grpo``, ``grpo-no-tool-cost``, ``grpo-no-request-cost``, ``grpo-no-answer``: ``awares-train grpo`` from
   the SFT model, the full reward and each reward term removed (same steps and seed; see :data:`GRPO_RUNS`).
5. ``eval/<run>``: the evaluation harness on the test split; base at fullres, lowres, full_on_request;
   every trained model in awares mode.

The report (``results.md``, ``results.json``, ``accuracy_vs_rtr.png``) goes to ``docs``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ReproduceConfig", "work_identity", "run_synthetic_reproduction", "GRPO_RUNS", "default_base", "run_stage", "cli_stage", "grpo_runs",
           "read_timings", "seed_dir", "write_synthetic_data", "build_synthetic_trajectories", "evaluate_synthetic",
           "CONFIGS"]

log = logging.getLogger(__name__)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

#: GRPO runs: name -> overrides of the GRPO config (the ablations drop one reward term each). ``C_tool`` holds
#: two pushes in opposite directions, the price of a request (fewer crops) and the missed-crop penalty (more
#: crops): ``grpo-no-tool-cost`` drops both, as the paper does, ``grpo-no-request-cost`` only the price, which
#: isolates what the price teaches (on the tiny benchmark the penalty dominates, so only the latter crops more).
GRPO_RUNS: dict[str, dict[str, Any]] = {
    "grpo": {},
    "grpo-no-tool-cost": {"tool_cost_weight": 0.0},
    "grpo-no-request-cost": {"request_cost": 0.0, "area_cost": 0.0},
    "grpo-no-answer": {"accuracy_weight": 0.0},
}


def default_base() -> Path:
    """The reproduction's base model folder (in a checkout of the repository; the wheel leaves it out).

    Raises:
        FileNotFoundError: not a checkout (an installed wheel); the message says to pass ``--base``.
    """
    import awares_tool

    path = Path(awares_tool.__file__).resolve().parent / "models" / "tiny-base"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"the reproduction's base model ships in the source repository, not in the wheel "
                                f"({path} is missing): run from a clone (make reproduce) or pass --base MODEL_DIR")
    return path


#: Defaults that depend on the data set: training records, test questions, SFT and GRPO configs, docs folder.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "synthetic": {"n_train": 2400, "n_test": 200, "sft_config": CONFIGS / "sft_tiny_reproduce.yaml",
                  "grpo_config": CONFIGS / "grpo_tiny_reproduce.yaml", "docs": Path("docs/reproduce")},
    "bench": {"n_train": 2000, "n_test": 1000, "sft_config": CONFIGS / "sft_tiny_bench.yaml",
              "grpo_config": CONFIGS / "grpo_tiny_bench.yaml", "docs": Path("docs/reproduce-bench")},
}


class ReproduceConfig(BaseModel):
    """Settings of one reproduction run (saved as ``work/reproduce.json``); unset sizes and configs follow ``dataset``."""

    model_config = ConfigDict(extra="forbid")

    dataset: Literal["bench", "synthetic"] = Field(
        "bench", description="bench: the awares-bench needle benchmark (tiny profile); synthetic: the one-code task.")
    base: Path = Field(default_factory=default_base, description="Base VLM folder the AwaRes stages start from.")
    work: Path = Field(Path("runs/reproduce"), description="Folder for data, trajectories, models and eval runs.")
    docs: Path | None = Field(None, description="Folder for results.md/json and the plots.")
    n_train: int | None = Field(None, ge=4, description="Training records (before the judge drops some).")
    n_test: int | None = Field(None, ge=2, description="Held-out test questions.")
    train_fonts: tuple[int, int] = Field((22, 32), description="synthetic: font size range of the training codes.")
    test_font: int = Field(28, description="synthetic: font size of the test codes.")
    bench_seed: int = Field(0, description="bench: generator seed of the train and test splits (0: the published one).")
    sft_config: Path | None = None
    grpo_config: Path | None = None
    sft_overrides: dict[str, Any] = Field(default_factory=dict, description="Extra SFT config fields.")
    grpo_overrides: dict[str, Any] = Field(default_factory=dict, description="Extra fields for every GRPO run.")
    ablations: bool = Field(True, description="Also run GRPO without each reward term.")
    threads: int = Field(2, ge=1, description="torch threads of every stage (1 on a busy machine: oversubscribed "
                                              "threads make torch many times slower).")
    seed: int = 0
    seeds: list[int] | None = Field(None, description="bench: training seeds (SFT, GRPO, evaluation per seed; data, "
                                                      "trajectories and the base's evaluation are shared).")

    @model_validator(mode="after")
    def _dataset_defaults(self) -> "ReproduceConfig":
        for key, value in DATASET_DEFAULTS[self.dataset].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.seeds is None:
            self.seeds = [self.seed]
        if self.dataset == "synthetic" and self.seeds != [self.seed]:
            raise ValueError("several --seeds need --dataset bench (the synthetic pipeline runs one seed)")
        return self


def work_identity(cfg: ReproduceConfig) -> dict[str, Any]:
    """What a reproduction's results depend on: its work folder's record (:mod:`awares_train.work_folder`).

    The base's and the configs' contents, the data sizes and the data seed; more ``seeds``, the ablations, the
    threads and the docs folder only add to or re-run the same stages, so they stay out.
    """
    from awares_train.work_folder import file_fingerprint, model_fingerprint

    identity = {"dataset": cfg.dataset, "base": model_fingerprint(cfg.base), "n_train": cfg.n_train,
                "n_test": cfg.n_test, "sft_config": file_fingerprint(cfg.sft_config),
                "grpo_config": file_fingerprint(cfg.grpo_config), "sft_overrides": cfg.sft_overrides,
                "grpo_overrides": cfg.grpo_overrides}
    if cfg.dataset == "bench":
        return {**identity, "bench_seed": cfg.bench_seed}
    return {**identity, "train_fonts": cfg.train_fonts, "test_font": cfg.test_font, "seed": cfg.seed}


def read_timings(path: Path) -> dict[str, float]:
    return json.loads(path.read_text()) if path.exists() else {}


def run_stage(name: str, done: Path, timings: Path, fn: Any) -> None:
    """Run ``fn`` unless ``done`` exists; add its wall time under ``name`` to the ``timings`` JSON file."""
    if done.exists():
        log.info("[%s] already done (%s)", name, done)
        return
    log.info("[%s] starting", name)
    t0 = time.time()
    fn()
    seconds = round(time.time() - t0, 1)
    timings.write_text(json.dumps({**read_timings(timings), name: seconds}, indent=2))
    log.info("[%s] done in %.1f min", name, seconds / 60)


def write_synthetic_data(cfg: ReproduceConfig) -> None:
    """The one-code task's train split (fonts ``cfg.train_fonts``) and test split (``cfg.test_font``) in ``work/data``."""
    from awares_train.data.synthetic import SyntheticConfig, write_split

    write_split(cfg.work / "data" / "train", cfg.n_train,
                SyntheticConfig(font_size_range=cfg.train_fonts, seed=cfg.seed), "train")
    write_split(cfg.work / "data" / "test", cfg.n_test, SyntheticConfig(font_size=cfg.test_font, seed=cfg.seed),
                "test")


def build_synthetic_trajectories(cfg: ReproduceConfig) -> None:
    """Trajectories of the one-code train split: the base answers, the exact judge labels, the codes' boxes ground."""
    from awares_train.data.build import BuildConfig, build_dataset

    build_dataset(BuildConfig(
        data=str(cfg.work / "data" / "train" / "records.jsonl"), out=str(cfg.work / "trajectories"),
        adapter="synthetic", backend=f"transformers:{cfg.base}", judge="exact", grounding="dataset",
        region_rule="cover", region_threshold=1.0, seed=cfg.seed, progress=True))


def _latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` folder a Trainer left in ``output_dir`` (None: start afresh)."""
    found = [(int(p.name.split("-")[-1]), p) for p in output_dir.glob("checkpoint-*")
             if p.is_dir() and p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()]
    return max(found)[1] if found else None


def cli_stage(command: str, config: Path, overrides: dict[str, Any]) -> None:
    """``awares-train COMMAND --config CONFIG --set k=v ...`` in a subprocess (fails loudly).

    A run stopped midway continues from the newest checkpoint in its ``output_dir`` (where the config saves
    any: the bench configs save every few steps), so a long stage is not redone from its start.
    """
    ckpt = _latest_checkpoint(Path(overrides["output_dir"])) if "output_dir" in overrides else None
    if ckpt is not None:
        log.info("resuming %s from %s", command, ckpt)
        overrides = {**overrides, "resume_from_checkpoint": str(ckpt)}
    args = [sys.executable, "-m", "awares_train.cli", command, "--config", str(config)]
    for k, v in overrides.items():
        args += ["--set", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    log.info("running %s", " ".join(args))
    subprocess.run(args, check=True)


def seed_dir(cfg: ReproduceConfig, seed: int) -> Path:
    """Folder of one training seed's SFT, GRPO runs and their evaluations."""
    return cfg.work / f"seed-{seed}"


def grpo_runs(cfg: ReproduceConfig) -> list[str]:
    """The GRPO runs of a reproduction: full reward, plus each ablation when ``cfg.ablations``."""
    return list(GRPO_RUNS) if cfg.ablations else ["grpo"]


def _evaluations(cfg: ReproduceConfig) -> list[tuple[str, Path, list[str]]]:
    runs = [("base", cfg.base, ["fullres", "lowres", "full_on_request"]), ("sft", cfg.work / "sft", ["awares"])]
    return runs + [(name, cfg.work / name, ["awares"]) for name in grpo_runs(cfg)]


def load_test_items(cfg: ReproduceConfig) -> list[Any]:
    """The test questions, grouped into ``needs-crop`` (codes) and ``low-res-ok`` (shapes, colours, counts)."""
    from awares_train.eval.harness import load_eval_items

    items = load_eval_items(cfg.work / "data" / "test" / "records.jsonl")
    return [it.model_copy(update={"benchmark": "needs-crop" if it.needs_crop else "low-res-ok"}) for it in items]


def evaluate_synthetic(cfg: ReproduceConfig, name: str, model: Path, modes: list[str]) -> None:
    """The evaluation harness on the one-code test split, written to ``cfg.work/eval/<name>``."""
    from awares_train.eval.harness import evaluate

    report = evaluate(load_test_items(cfg), f"transformers:{model}", modes, label=name)
    report.save(cfg.work / "eval" / name)


def run_synthetic_reproduction(cfg: ReproduceConfig) -> dict[str, Any]:
    """Run (or resume) every stage of the synthetic reproduction, then write the report; returns the results."""
    from awares_train.reproduce.report import write_report

    timings = cfg.work / "timings.json"
    common = {"seed": cfg.seed, "torch_threads": cfg.threads}
    run_stage("data", cfg.work / "data" / "test" / "records.jsonl", timings, lambda: write_synthetic_data(cfg))
    run_stage("trajectories", cfg.work / "trajectories" / "stats.json", timings,
              lambda: build_synthetic_trajectories(cfg))
    sft_dir = cfg.work / "sft"
    run_stage("sft", sft_dir / "awares.json", timings, lambda: cli_stage("sft", cfg.sft_config, {
        **common, "model_name_or_path": str(cfg.base), "train_data": str(cfg.work / "trajectories"),
        "output_dir": str(sft_dir), **cfg.sft_overrides}))
    for name in grpo_runs(cfg):
        out, extra = cfg.work / name, GRPO_RUNS[name]
        overrides = {**common, "model_name_or_path": str(sft_dir), "train_data": str(cfg.work / "trajectories"),
                     "output_dir": str(out), **cfg.grpo_overrides, **extra}
        run_stage(name, out / "awares.json", timings,
                  lambda overrides=overrides: cli_stage("grpo", cfg.grpo_config, overrides))
    for name, model, modes in _evaluations(cfg):
        run_stage(f"eval:{name}", cfg.work / "eval" / name / "report.json", timings,
                  lambda name=name, model=model, modes=modes: evaluate_synthetic(cfg, name, model, modes))
    return write_report(cfg, [name for name, _, _ in _evaluations(cfg)], read_timings(timings))
