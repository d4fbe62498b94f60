"""``awares-train reproduce``: the tiny AwaRes reproduction end to end (``make reproduce``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

#: Settings of ``--quick``: every stage runs, on a handful of samples (smoke test of the whole pipeline).
QUICK = {"n_train": 24, "n_test": 8, "sft_overrides": {"max_steps": 2, "num_train_epochs": 1},
         "grpo_overrides": {"max_steps": 1, "per_device_train_batch_size": 4, "num_generations": 4}}


def reproduce(
    dataset: str = typer.Option("bench", "--dataset", help="bench (awares-bench, tiny profile) or synthetic."),
    base: Optional[Path] = typer.Option(None, "--base", help="Base VLM folder (default: the shipped tiny-base)."),
    work: Path = typer.Option(Path("runs/reproduce"), "--work", help="Working folder (a rerun resumes)."),
    docs: Optional[Path] = typer.Option(None, "--docs", help="Where results.md/json and the plots go "
                                        "(default: docs/reproduce-bench, or docs/reproduce for synthetic)."),
    n_train: Optional[int] = typer.Option(None, "--n-train", help="Training records (default 2000 bench, 2400 synthetic)."),
    n_test: Optional[int] = typer.Option(None, "--n-test", help="Test questions (default 1000 bench, 200 synthetic)."),
    seeds: str = typer.Option("0", "--seeds", help="bench: comma-separated training seeds, e.g. 0,1,2."),
    report_only: bool = typer.Option(False, "--report-only",
                                     help="bench: only (re)write the report from the evaluations done so far."),
    ablations: bool = typer.Option(True, "--ablations/--no-ablations", help="GRPO without each reward term too."),
    threads: int = typer.Option(2, "--threads", help="torch threads of every stage (use 1 while other jobs run)."),
    quick: bool = typer.Option(False, "--quick", help="A few samples and steps per stage (smoke test)."),
) -> None:
    """Benchmark (or synthetic) data -> trajectories -> SFT -> GRPO (+ ablations) -> evaluation -> report."""
    from awares_train.reproduce.pipeline import ReproduceConfig
    from awares_train.reproduce.run import run_reproduction

    if dataset not in ("bench", "synthetic"):
        raise typer.BadParameter(f"--dataset must be bench or synthetic, got {dataset!r}")
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as e:
        raise typer.BadParameter(f"--seeds must be comma-separated integers such as 0,1,2, got {seeds!r}") from e
    settings: dict = {"dataset": dataset, "work": work, "docs": docs, "ablations": ablations, "threads": threads,
                      "seeds": seed_list, "seed": seed_list[0]}
    if quick:
        settings.update(QUICK)
    if base is not None:
        settings["base"] = base
    if n_train is not None:
        settings["n_train"] = n_train
    if n_test is not None:
        settings["n_test"] = n_test
    try:
        cfg = ReproduceConfig(**settings)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    if report_only:
        from awares_train.reproduce.bench_report import write_bench_report
        from awares_train.reproduce.pipeline import read_timings

        if cfg.dataset != "bench":
            raise typer.BadParameter("--report-only needs --dataset bench")
        results = write_bench_report(cfg, read_timings(cfg.work / "timings.json"))
    else:
        from awares_train.work_folder import WorkFolderMismatchError

        try:
            results = run_reproduction(cfg)
        except WorkFolderMismatchError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
    typer.echo((Path(cfg.docs) / "results.md").read_text())  # type: ignore[arg-type]
    typer.echo(f"total {results['total_minutes']} min; written to {cfg.docs}")
