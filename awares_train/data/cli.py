"""``awares-train build-data``: turn a VQA data set into crop-use trajectories.

Settings come from ``--config`` (YAML or JSON with :class:`~awares_train.data.build.BuildConfig`
fields) and are overridden by the flags given on the command line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from awares_tool.backends.spec import spec_with_options
from awares_tool.errors import BackendSpecError
from awares_tool.cli import attn_option, device_option, dtype_option
from awares_train.data.answering import load_backend

__all__ = ["build_data", "load_backend"]  # load_backend: re-exported from .answering


def build_data(
    data: Optional[str] = typer.Option(None, "--data", help="Input: JSONL/JSON/parquet file or folder, datasets folder."),
    out: Optional[str] = typer.Option(None, "--out", help="Output trajectory folder (resumed if it exists)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON file of settings; flags override it."),
    adapter: Optional[str] = typer.Option(None, help="auto, generic, synthetic, chartqa, docvqa, infovqa, textvqa, awares."),
    split: Optional[str] = typer.Option(None, help="Split of a DatasetDict / sharded parquet folder."),
    image_root: Optional[str] = typer.Option(None, help="Folder that relative image paths start from."),
    limit: Optional[int] = typer.Option(None, help="Only this many records."),
    shuffle: Optional[bool] = typer.Option(None, "--shuffle/--no-shuffle", help="Seeded random record order."),
    backend: Optional[str] = typer.Option(None, help="Answering backend spec (transformers:PATH, openai:URL#M, py:MOD:ATTR)."),
    judge: Optional[str] = typer.Option(None, help="auto, exact, relaxed, anls, vqa, ocrbench, embedding, llm:BACKEND."),
    judge_threshold: Optional[float] = typer.Option(None, help="Score an answer needs to count as right."),
    tie_margin: Optional[float] = typer.Option(None, help="Score difference treated as a tie."),
    grounding: Optional[str] = typer.Option(None, help="Grounders in order, e.g. dataset,ocr,vlm=BACKEND."),
    bbox_units: Optional[str] = typer.Option(None, help="VLM grounding box units: norm1000, pixels, norm1."),
    region_rule: Optional[str] = typer.Option(None, help="iou (paper, every crop with IoU >= threshold) or cover."),
    region_threshold: Optional[float] = typer.Option(None, help="IoU or coverage threshold."),
    on_no_box: Optional[str] = typer.Option(None, help="Crop record without evidence box: all or reject."),
    crop_set: Optional[str] = typer.Option(None, help="Crop set (awares9, grid:3x3, file)."),
    lowres: Optional[str] = typer.Option(None, help="Low-res policy (0.5, 512px, tokens:qwen2.5-vl:256)."),
    prompt_style: Optional[str] = typer.Option(None, help="System prompt style: full, compact, tool."),
    answer_source: Optional[str] = typer.Option(None, help="Final answer: reference or model."),
    keep_drop: Optional[bool] = typer.Option(None, "--keep-drop/--no-keep-drop", help="Keep records both answers got wrong."),
    token_family: Optional[str] = typer.Option(None, help="Token family for the target RTR."),
    max_new_tokens: Optional[int] = typer.Option(None, help="Answer length limit."),
    concurrency: Optional[int] = typer.Option(None, help="Records in flight (remote backends)."),
    seed: Optional[int] = typer.Option(None, help="Seed (order, judge order, decoding)."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Show a progress bar."),
    plot: Optional[bool] = typer.Option(None, "--plot/--no-plot", help="Draw stats.png."),
    device: Optional[str] = device_option(),
    dtype: Optional[str] = dtype_option(),
    attn: Optional[str] = attn_option(),
) -> None:
    """Answer each question from the low-res view and the full image, judge, ground, and write trajectories."""
    from awares_train.data.build import BuildConfig, build_dataset

    settings: dict[str, Any] = {}
    if config is not None:
        text = config.read_text(encoding="utf-8")
        if config.suffix.lower() in (".yaml", ".yml"):
            import yaml

            settings = yaml.safe_load(text) or {}
        else:
            settings = json.loads(text)
    given = dict(data=data, out=out, adapter=adapter, split=split, image_root=image_root, limit=limit,
                 shuffle=shuffle, backend=backend, judge=judge, judge_threshold=judge_threshold, tie_margin=tie_margin,
                 grounding=grounding, bbox_units=bbox_units, region_rule=region_rule,
                 region_threshold=region_threshold, on_no_box=on_no_box, crop_set=crop_set, lowres=lowres,
                 prompt_style=prompt_style, answer_source=answer_source, keep_drop=keep_drop,
                 token_family=token_family, max_new_tokens=max_new_tokens, concurrency=concurrency, seed=seed,
                 progress=progress, plot=plot)
    settings.update({k: v for k, v in given.items() if v is not None})
    if device or dtype or attn:
        # Written into the spec, so the run's recorded settings say how the answers were made (a resume with
        # other flags is refused as "different settings"), and --config files can carry them as spec options.
        spec = settings.get("backend")
        if isinstance(spec, str) and spec.startswith("py:"):
            raise typer.BadParameter("--device/--dtype/--attn apply to transformers backends, not py: backends")
        try:
            settings["backend"] = spec_with_options(spec, device=device, dtype=dtype, attn=attn)
        except BackendSpecError as e:
            raise typer.BadParameter(str(e)) from e
    for required in ("data", "out"):
        if not settings.get(required):
            raise typer.BadParameter(f"--{required} is required (on the command line or in --config)")
    cfg = BuildConfig(**settings)
    report = build_dataset(cfg)
    typer.echo(json.dumps(report.model_dump(exclude={"stats"}), indent=2))
    typer.echo(json.dumps({k: report.stats[k] for k in ("labels", "label_shares", "crop_histogram",
                                                         "mean_target_rtr", "fallback_all")}, indent=2))
