"""``awares-train grpo --config FILE [--set key=value ...]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def grpo(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (AwaresGRPOConfig fields).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: key=value (repeatable).")] = None,
) -> None:
    """Multi-turn GRPO with the get_crops tool and crop-cost penalties."""
    try:
        from awares_train.grpo.config import AwaresGRPOConfig
        from awares_train.grpo.train import run_grpo
        from awares_train.sft.runio import load_config, release_distributed
    except ImportError as e:
        raise typer.BadParameter(f"GRPO needs the train extra: pip install 'awares[train]' ({e})") from e
    try:
        cfg = load_config(AwaresGRPOConfig, config, set_ or [])
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--config/--set") from e
    try:
        out = run_grpo(cfg)
    finally:
        release_distributed()
    typer.echo(f"GRPO finished: {out}")
