"""Run a backend on a generated split and report accuracy against visual tokens, with 95% intervals.

Everything goes through the evaluation harness (:func:`awares_train.eval.harness.evaluate`, hence through
:func:`awares_tool.crop_on_demand`); this module adds what the benchmark knows and the harness does not: the
cells per item kind, above and below the pixel cap, and by label; the oracle RTR of every cell (each item given
exactly its target crops, counted with the same token counter the loop uses); and the pixel cap of the
profile, applied to the model so that the "full resolution" baseline sees what a capped processor would.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from awares_train.eval.harness import (
    EvalItem,
    ItemResult,
    ModeSummary,
    evaluate,
    intervals_markdown,
    load_eval_items,
    plot_accuracy_vs_rtr,
    region_confusion_markdown,
    summaries_markdown,
    summarize_cell,
)

from .generator import BenchItem
from .profiles import BenchProfile, get_profile

__all__ = ["BenchReport", "ReadabilityBin", "readability_curve", "resolve_items_file", "load_bench", "run_bench", "SLICES"]

log = logging.getLogger(__name__)

#: Cells beside the per-kind ones: name -> which items belong to it.
SLICES: dict[str, Callable[[BenchItem], bool]] = {
    "overall": lambda it: True,
    "needs-crop": lambda it: it.needs_crop,
    "lowres-ok": lambda it: not it.needs_crop,
    "two-crop": lambda it: len(it.evidence_regions) == 2,
    "above-cap": lambda it: it.above_cap,
    "below-cap": lambda it: not it.above_cap,
}


class ReadabilityBin(BaseModel):
    """Accuracy of one mode on items whose evidence digits were ``lo``-``hi`` px tall in the view it saw."""

    mode: str
    lo: float
    hi: float | None
    n: int
    accuracy: float
    accuracy_ci: tuple[float, float] | None


#: Bin edges of the readability curve, in multiples of the profile's threshold.
CURVE_EDGES: tuple[float, ...] = (0.0, 0.5, 0.7, 0.87, 1.15, 1.5, 2.0)
#: Which digit height each single-view mode sees.
_VIEW_FIELD = {"lowres": "digit_px_lowres", "fullres": "digit_px_capped"}


def readability_curve(results: Sequence[ItemResult], items: Sequence[BenchItem], threshold: float) -> list[ReadabilityBin]:
    """Accuracy by the digit height each single-view mode really saw: the curve that calibrates the threshold.

    A model whose low-res accuracy is already high below the threshold reads smaller text than the profile
    assumes: regenerate with a lower ``--threshold-px`` (or a higher one in the opposite case).
    """
    from awares_train.eval.intervals import score_interval

    by_id = {it.id: it for it in items}
    edges = [e * threshold for e in CURVE_EDGES] + [None]
    out = []
    for mode, field in _VIEW_FIELD.items():
        rs = [r for r in results if r.mode == mode and r.id in by_id]
        for lo, hi in zip(edges[:-1], edges[1:]):
            group = [r.score for r in rs if lo <= getattr(by_id[r.id], field) and (hi is None or getattr(by_id[r.id], field) < hi)]
            if group:
                out.append(ReadabilityBin(mode=mode, lo=round(lo, 2), hi=None if hi is None else round(hi, 2), n=len(group),
                                          accuracy=sum(group) / len(group), accuracy_ci=score_interval(group)))
    return out


class BenchReport(BaseModel):
    """The outcome of ``awares-bench run``: cells with intervals, oracle RTRs and what was run."""

    label: str
    backend: str
    data: str
    profile: BenchProfile
    n: int
    modes: list[str]
    max_pixels: int | None
    cap_applied_by: str
    summaries: list[ModeSummary]
    oracle_rtr: dict[str, float]
    readability: list[ReadabilityBin] = []

    def cell(self, mode: str, benchmark: str = "overall") -> ModeSummary | None:
        return next((s for s in self.summaries if s.mode == mode and s.benchmark == benchmark), None)

    def to_markdown(self) -> str:
        lines = [
            f"# awares-bench: `{self.label}`", "",
            f"- data: `{self.data}` ({self.n} items, profile `{self.profile.name}`: threshold "
            f"{self.profile.threshold_px:g} px digit height, pixel cap {self.profile.max_pixels:,})",
            f"- backend: `{self.backend}`; modes: {', '.join(self.modes)}",
            f"- pixel cap applied to the model: {self.max_pixels if self.max_pixels else 'none'} "
            f"({self.cap_applied_by})",
            "- oracle RTR: every item given exactly its target crops (none where the low-res view suffices), "
            "counted with the same token counter as the measured RTR",
            "", "## Results with 95% confidence intervals", "",
            "Wilson intervals for rates (accuracy when every score is 0/1, decision and region accuracy), "
            "Student's t for means (RTR, partial-credit accuracy).", "",
            intervals_markdown(self.summaries, oracle_rtr=self.oracle_rtr), "",
            "![accuracy vs RTR](accuracy_vs_rtr.png)", "",
        ]
        overall = self.cell("awares")
        if overall and overall.region_confusion:
            lines += ["## Regions requested (awares, items that need a crop)", "", region_confusion_markdown(overall), ""]
        if self.readability:
            lines += ["## Accuracy by the digit height the model saw", "",
                      f"Low-res mode against the digits' height in the low-res view, full-res mode against the capped "
                      f"full view; the profile's threshold is {self.profile.threshold_px:g} px. Items are generated "
                      "outside the band between threshold/margin and threshold*margin in the low-res view.", "",
                      "| mode | digit px | n | accuracy % [95% CI] |", "|---|---|---|---|"]
            for b in self.readability:
                span = f"{b.lo:g}-{b.hi:g}" if b.hi is not None else f">= {b.lo:g}"
                ci = f" [{100 * b.accuracy_ci[0]:.1f}, {100 * b.accuracy_ci[1]:.1f}]" if b.accuracy_ci else ""
                lines.append(f"| {b.mode} | {span} | {b.n} | {100 * b.accuracy:.1f}{ci} |")
            lines.append("")
        lines += ["## All figures", "", summaries_markdown(self.summaries), ""]
        return "\n".join(lines)

    def save(self, out_dir: str | Path, results: Sequence[ItemResult] = (), items: Sequence[BenchItem] = ()) -> Path:
        """Write ``report.json``, ``report.md``, ``items.jsonl`` (per item and mode) and the plots."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(self.model_dump_json(indent=2) + "\n")
        (out / "report.md").write_text(self.to_markdown())
        if results:
            by_id = {it.id: it for it in items}
            with (out / "items.jsonl").open("w") as f:
                for r in results:
                    rec = r.model_dump()
                    it = by_id.get(r.id)
                    if it is not None:
                        rec.update(template=it.template, above_cap=it.above_cap, evidence_regions=it.evidence_regions,
                                   digit_px_lowres=it.digit_px_lowres, answers=it.answers)
                    f.write(json.dumps(rec) + "\n")
        plot_accuracy_vs_rtr(self.summaries, out / "accuracy_vs_rtr.png", oracle_rtr=self.oracle_rtr.get("overall"),
                             title=f"awares-bench ({self.profile.name}): accuracy vs visual tokens, 95% CI")
        if any(s.benchmark == "above-cap" for s in self.summaries):
            plot_accuracy_vs_rtr(self.summaries, out / "accuracy_vs_rtr_above_cap.png", benchmark="above-cap",
                                 oracle_rtr=self.oracle_rtr.get("above-cap"),
                                 title=f"items above the pixel cap ({self.profile.max_pixels:,} px)")
        return out


def resolve_items_file(data: str | Path, split: str = "test") -> Path:
    """``items.jsonl`` of a split folder, of ``DATA/SPLIT/``, or the file itself.

    Raises:
        FileNotFoundError: none of these exists; the message says what was looked for.
    """
    p = Path(data)
    for cand in (p, p / "items.jsonl", p / split / "items.jsonl"):
        if cand.is_file():
            return cand
    raise FileNotFoundError(
        f"no benchmark items at {p}: expected {p}/items.jsonl or {p}/{split}/items.jsonl "
        "(write them with `awares-bench generate`)")


def load_bench(path: Path, limit: int | None = None) -> tuple[list[BenchItem], list[EvalItem], BenchProfile]:
    """The items of a split (as benchmark and as harness items) and the profile they were generated for."""
    bench = [BenchItem.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]
    if limit:
        bench = bench[:limit]
    evals = load_eval_items(path, limit=limit)
    settings = path.parent / "settings.json"
    if settings.is_file():
        profile = BenchProfile.model_validate(json.loads(settings.read_text())["profile"])
    else:
        profile = get_profile(bench[0].profile if bench else "qwen2.5-vl")
    return bench, evals, profile


def _counter(be: Any, profile: BenchProfile) -> Callable[[int, int], int]:
    counter = getattr(be, "count_image_tokens", None)
    if callable(counter):
        return lambda w, h: int(counter(w, h))
    family = getattr(be, "token_family", None)
    if family:
        from awares_tool.tokens import get_family

        fam = get_family(family)
        return fam.count
    return profile.token_family().count


def _backend_with_cap(backend: Any, max_pixels: int | None) -> tuple[Any, dict[str, Any], str]:
    """Resolve the backend so that the model sees at most ``max_pixels`` per image.

    Transformers backends (and the embedded default) get the cap in their processor (exact token counts, and the
    loop reads it from there); other backends are told it (``model_max_pixels``) and get every image downscaled
    to it by the loop (``crop_max_pixels``).
    """
    from awares_tool.backends import resolve_backend

    if max_pixels is None:
        return resolve_backend(backend), {}, "not applied"
    kind = backend.partition(":")[0] if isinstance(backend, str) else None
    if backend is None or backend == "default" or kind in ("transformers", "hf"):
        return resolve_backend(backend, max_pixels=max_pixels), {}, "the processor's max_pixels"
    return (resolve_backend(backend), {"crop_max_pixels": max_pixels, "model_max_pixels": max_pixels},
            "the loop's crop_max_pixels")


def run_bench(
    data: str | Path,
    backend: Any = None,
    modes: Sequence[str] = ("awares", "lowres", "fullres"),
    *,
    split: str = "test",
    limit: int | None = None,
    label: str | None = None,
    max_pixels: int | str | None = "profile",
    concurrency: int = 1,
    progress: bool = True,
    out: str | Path | None = None,
    **loop_kwargs: Any,
) -> BenchReport:
    """Evaluate ``backend`` on a generated split in each mode and build the report.

    Args:
        data: A split folder, a benchmark root with ``SPLIT/``, or an ``items.jsonl``.
        backend: Backend spec or object (None: the embedded default model).
        modes: Loop modes.
        split: Split to use when ``data`` is a root folder.
        limit: Only the first N items.
        label: Name of the model in tables and plots.
        max_pixels: Pixel cap for the model: ``"profile"`` (the profile's cap), an int, or None (none).
        concurrency: Parallel questions (remote backends).
        progress: Progress bars.
        out: If given, write the report there.
        **loop_kwargs: Passed to :func:`awares_tool.crop_on_demand`.
    """
    path = resolve_items_file(data, split)
    bench, evals, profile = load_bench(path, limit)
    if not bench:
        raise ValueError(f"{path} holds no items")
    cap = profile.max_pixels if max_pixels == "profile" else (int(max_pixels) if max_pixels else None)
    be, cap_kwargs, cap_how = _backend_with_cap(backend, cap)
    loop_kwargs = {**cap_kwargs, **loop_kwargs}
    report = evaluate(evals, be, list(modes), label=label, concurrency=concurrency, progress=progress, **loop_kwargs)
    by_id = {it.id: it for it in bench}
    summaries: list[ModeSummary] = []
    kinds = sorted({it.benchmark for it in bench})
    for mode in modes:
        rs = [r for r in report.items if r.mode == mode]
        groups = {name: [r for r in rs if by_id[r.id].benchmark == name] for name in kinds}
        groups.update({name: [r for r in rs if keep(by_id[r.id])] for name, keep in SLICES.items()})
        for name, group in groups.items():
            if group:
                summaries.append(summarize_cell(group, report.label, mode, name))
    count = _counter(be, profile)
    oracles = {it.id: it.oracle_rtr(count, lowres_factor=profile.lowres_factor, model_max_pixels=cap,
                                    crop_max_pixels=loop_kwargs.get("crop_max_pixels")) for it in bench}
    oracle = {}
    for name in kinds:
        vals = [oracles[it.id] for it in bench if it.benchmark == name]
        oracle[name] = sum(vals) / len(vals)
    for name, keep in SLICES.items():
        vals = [oracles[it.id] for it in bench if keep(it)]
        if vals:
            oracle[name] = sum(vals) / len(vals)
    result = BenchReport(label=report.label, backend=report.backend or str(backend), data=str(path), profile=profile,
                         n=len(bench), modes=list(modes), max_pixels=cap, cap_applied_by=cap_how, summaries=summaries,
                         oracle_rtr=oracle, readability=readability_curve(report.items, bench, profile.threshold_px))
    if out is not None:
        result.save(out, report.items, bench)
    return result
