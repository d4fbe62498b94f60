"""The ``awares-bench`` command line: generate a split, run a backend on it, merge reports, look at items."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(rich_markup_mode=None, add_completion=False, no_args_is_help=True,  # help as written
                  help="A generated high-resolution needle benchmark: accuracy at equal visual tokens.")


@app.command()
def generate(
    out: Path = typer.Option(..., "--out", help="Benchmark root; each split goes to OUT/SPLIT/."),
    profile: str = typer.Option("qwen2.5-vl", "--profile", help="Reader profile: qwen2.5-vl or tiny."),
    splits: str = typer.Option("test", "--splits", help="Comma-separated splits: train,val,test."),
    n: int = typer.Option(500, "--n", min=1, help="Items per split."),
    seed: int = typer.Option(0, "--seed", help="Seed; same arguments give the same bytes."),
    lowres_share: float = typer.Option(0.78, "--lowres-share", min=0.0, max=1.0,
                                       help="Share of items answerable from the low-res view."),
    pair_share: float = typer.Option(0.1, "--pair-share", min=0.0, max=1.0, help="Share of two-crop items."),
    threshold_px: Optional[float] = typer.Option(None, "--threshold-px",
                                                 help="Readability threshold (digit height, px); default: the profile's."),
    margin: Optional[float] = typer.Option(None, "--margin", help="Margin around the threshold; default: the profile's."),
    kinds: str = typer.Option("document,chart,scene", "--kinds", help="Item kinds to draw (equal weights)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes drawing in parallel (same output)."),
) -> None:
    """Write splits of the benchmark: images/, items.jsonl, settings.json and stats.json per split."""
    from .generator import BenchConfig, write_split

    try:
        cfg = BenchConfig(profile=profile, seed=seed, lowres_share=lowres_share, pair_share=pair_share,
                          threshold_px=threshold_px, margin=margin,
                          kinds={k.strip(): 1.0 for k in kinds.split(",") if k.strip()})
        cfg.resolved_profile()
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    for split in [s.strip() for s in splits.split(",") if s.strip()]:
        path = write_split(out / split, cfg, split, n, workers=workers, progress=True)
        stats = json.loads((path.parent / "stats.json").read_text())
        typer.echo(f"{split}: {stats['n']} items, {100 * stats['lowres_share']:.1f}% answerable at low res, "
                   f"{stats['above_cap']} above the pixel cap, targets {stats['targets']} -> {path}")


@app.command()
def run(
    data: Path = typer.Option(..., "--data", help="Split folder, benchmark root (with --split) or items.jsonl."),
    backend: Optional[str] = typer.Option(None, "--backend",
                                          help="transformers:PATH, llamacpp:MODEL.gguf, openai:URL#MODEL; default: embedded."),
    modes: str = typer.Option("awares,lowres,fullres", "--modes", help="Comma-separated loop modes."),
    out: Path = typer.Option(Path("out/bench"), "--out", help="Folder for report.json/.md, items.jsonl and plots."),
    split: str = typer.Option("test", "--split", help="Split to use when --data is a benchmark root."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N items."),
    label: Optional[str] = typer.Option(None, "--label", help="Name of this model in the tables."),
    max_pixels: str = typer.Option("profile", "--max-pixels",
                                   help="Pixel cap for the model: 'profile', a number, or 'none'."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="Parallel questions (remote backends)."),
) -> None:
    """Evaluate a backend on a split: accuracy, RTR, decision and region accuracy with 95% intervals."""
    from .run import run_bench

    cap: int | str | None
    if max_pixels == "profile":
        cap = "profile"
    elif max_pixels.lower() == "none":
        cap = None
    else:
        try:
            cap = int(max_pixels)
        except ValueError as e:
            raise typer.BadParameter(f"--max-pixels must be 'profile', 'none' or a number, got {max_pixels!r}") from e
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    try:
        report = run_bench(data, backend, mode_list, split=split, limit=limit, label=label, max_pixels=cap,
                           concurrency=concurrency, out=out)
    except FileNotFoundError as e:
        raise typer.BadParameter(str(e)) from e
    typer.echo(report.to_markdown())
    typer.echo(f"written to {out}")


@app.command()
def report(
    runs: list[Path] = typer.Argument(..., help="Folders written by `awares-bench run`."),
    out: Path = typer.Option(..., "--out", help="Folder for the merged report.md and plots."),
) -> None:
    """Merge several runs (e.g. base, SFT, GRPO) into one table and one accuracy-vs-RTR plot."""
    from awares_train.eval.harness import intervals_markdown, plot_accuracy_vs_rtr

    from .run import BenchReport

    reports = []
    for r in runs:
        path = r / "report.json" if r.is_dir() else r
        if not path.is_file():
            raise typer.BadParameter(f"no report.json in {r}; pass folders written by `awares-bench run`")
        reports.append(BenchReport.model_validate_json(path.read_text()))
    summaries = [s for rep in reports for s in rep.summaries]
    oracle = reports[0].oracle_rtr
    out.mkdir(parents=True, exist_ok=True)
    plot_accuracy_vs_rtr(summaries, out / "accuracy_vs_rtr.png", oracle_rtr=oracle.get("overall"),
                         title="awares-bench: accuracy vs visual tokens, 95% CI")
    if any(s.benchmark == "above-cap" for s in summaries):
        plot_accuracy_vs_rtr(summaries, out / "accuracy_vs_rtr_above_cap.png", benchmark="above-cap",
                             oracle_rtr=oracle.get("above-cap"), title="items above the pixel cap")
    cells = sorted(summaries, key=lambda s: (s.benchmark != "overall", s.benchmark, s.label, s.mode))
    text = "\n".join(["# awares-bench: merged runs", "",
                      *(f"- `{rep.label}`: {rep.data} ({rep.n} items, {rep.backend})" for rep in reports), "",
                      intervals_markdown(cells, oracle_rtr=oracle), "", "![accuracy vs RTR](accuracy_vs_rtr.png)", ""])
    (out / "report.md").write_text(text)
    typer.echo(text)


@app.command()
def show(
    data: Path = typer.Option(..., "--data", help="Split folder or items.jsonl."),
    ids: str = typer.Option(..., "--ids", help="Comma-separated item ids (or indices into the file)."),
    out: Path = typer.Option(Path("out/bench-show"), "--out", help="Folder for the overlays."),
    max_side: int = typer.Option(1200, "--max-side", help="Downscale overlays to this longest side."),
) -> None:
    """Draw items with their evidence boxes (red) and target crops, to check what a question needs."""
    from PIL import Image, ImageDraw

    from awares_tool.crops.overlay import draw_overlay

    from .generator import BenchItem
    from .run import resolve_items_file

    path = resolve_items_file(data)
    items = [BenchItem.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]
    by_id = {it.id: it for it in items}
    out.mkdir(parents=True, exist_ok=True)
    for key in [k.strip() for k in ids.split(",") if k.strip()]:
        it = by_id.get(key) or (items[int(key)] if key.isdigit() and int(key) < len(items) else None)
        if it is None:
            raise typer.BadParameter(f"no item {key!r} in {path}")
        img = Image.open(path.parent / it.image).convert("RGB")
        label = f"{'crop ' + '+'.join(it.target_regions) if it.needs_crop else 'low-res ok'}: {it.question}"
        img = draw_overlay(img, "awares9", regions=it.evidence_regions, highlight=it.target_regions, title=label)
        d = ImageDraw.Draw(img)
        for b in it.evidence_boxes:
            d.rectangle((b[0] - 2, b[1] - 2, b[2] + 2, b[3] + 2), outline=(255, 0, 0), width=max(2, img.width // 500))
        s = min(1.0, max_side / max(img.size))
        if s < 1:
            img = img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.LANCZOS)
        dest = out / f"{it.id}.png"
        img.save(dest)
        typer.echo(f"{dest}  {it.question} -> {it.answers}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
