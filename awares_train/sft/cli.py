"""``awares-train sft --config FILE [--set key=value ...]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def sft(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (AwaresSFTConfig fields).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: key=value (repeatable).")] = None,
) -> None:
    """Cold-start SFT on AwaRes trajectories (LoRA or full fine-tuning)."""
    try:
        from awares_train.sft.config import AwaresSFTConfig
        from awares_train.sft.runio import load_config, release_distributed
        from awares_train.sft.train import run_sft
    except ImportError as e:
        raise typer.BadParameter(f"SFT needs the train extra: pip install 'awares[train]' ({e})") from e
    try:
        cfg = load_config(AwaresSFTConfig, config, set_ or [])
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--config/--set") from e
    try:
        out = run_sft(cfg)
    finally:
        release_distributed()
    typer.echo(f"SFT finished: {out}")
