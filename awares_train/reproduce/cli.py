"""``awares-train reproduce``: the tiny AwaRes reproduction end to end (``make reproduce``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

#: Settings of ``--quick``: every stage runs, on a handful of samples (smoke test of the whole pipeline).
QUICK = {"n_train": 24, "n_test": 8, "sft_overrides": {"max_steps": 2, "num_train_epochs": 1},
         "grpo_overrides": {"max_steps": 1}}


def reproduce(
    base: Optional[Path] = typer.Option(None, "--base", help="Base VLM folder (default: the shipped tiny-base)."),
    work: Path = typer.Option(Path("runs/reproduce"), "--work", help="Working folder (a rerun resumes)."),
    docs: Path = typer.Option(Path("docs/reproduce"), "--docs", help="Where results.md/json and the plot go."),
    n_train: Optional[int] = typer.Option(None, "--n-train", help="Synthetic training records."),
    n_test: Optional[int] = typer.Option(None, "--n-test", help="Test questions."),
    ablations: bool = typer.Option(True, "--ablations/--no-ablations", help="GRPO without each reward term too."),
    threads: int = typer.Option(2, "--threads", help="torch threads of every stage (use 1 while other jobs run)."),
    quick: bool = typer.Option(False, "--quick", help="A few samples and steps per stage (smoke test)."),
) -> None:
    """Synthetic data -> trajectories -> SFT -> GRPO (+ ablations) -> evaluation -> results table and plot."""
    from awares_train.reproduce.pipeline import ReproduceConfig, run_reproduction

    settings: dict = {"work": work, "docs": docs, "ablations": ablations, "threads": threads}
    if quick:
        settings.update(QUICK)
    if base is not None:
        settings["base"] = base
    if n_train is not None:
        settings["n_train"] = n_train
    if n_test is not None:
        settings["n_test"] = n_test
    results = run_reproduction(ReproduceConfig(**settings))
    typer.echo((Path(docs) / "results.md").read_text())
    typer.echo(f"total {results['total_minutes']} min; written to {docs}")
