"""``awares-train eval``: evaluate a backend in one or more modes and write JSON, Markdown and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from awares_tool.cli import attn_option, device_option, dtype_option


def evaluate(
    data: Path = typer.Option(..., "--data", help="JSONL of questions (image, question, answers)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Backend spec (default: the embedded model)."),
    modes: str = typer.Option("awares,lowres,fullres", "--modes", help="Comma-separated loop modes."),
    out: Path = typer.Option(Path("out/eval"), "--out", help="Folder for report.json/.md and the plot."),
    label: Optional[str] = typer.Option(None, "--label", help="Name of this model in the tables."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Override the metric of every question."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N questions."),
    concurrency: int = typer.Option(1, "--concurrency", help="Parallel questions (remote backends)."),
    device: Optional[str] = device_option(),
    dtype: Optional[str] = dtype_option(),
    attn: Optional[str] = attn_option(),
) -> None:
    """Run the evaluation harness and print the results table."""
    from awares_tool.backends import spec_with_options
    from awares_tool.errors import BackendSpecError

    from .harness import evaluate as run, load_eval_items

    try:  # a bad spec or flag fails at once, before the data and the model load
        spec = spec_with_options(backend, device=device, dtype=dtype, attn=attn)
    except BackendSpecError as e:
        raise typer.BadParameter(str(e)) from e
    items = load_eval_items(data, metric=metric, limit=limit)
    report = run(items, spec, [m.strip() for m in modes.split(",") if m.strip()], label=label,
                 concurrency=concurrency)
    report.save(out)
    typer.echo(report.to_markdown())
    typer.echo(f"\nwritten to {out}")
