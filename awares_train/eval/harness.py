"""Run any backend in any mode over an evaluation set and report accuracy against visual-token cost.

Every mode goes through :func:`awares_tool.crop_on_demand`, so accuracy, RTR, crops per sample, rounds and
latency are measured the same way for the AwaRes model and for its baselines. Reports come as JSON, a
Markdown table and an accuracy-vs-RTR plot.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pydantic import BaseModel, Field

from awares_tool import crop_on_demand_batch
from awares_tool.backends import resolve_backend

from .intervals import score_interval, t_interval, wilson_interval

__all__ = ["EvalItem", "ItemResult", "ModeSummary", "EvalReport", "evaluate", "load_eval_items", "plot_accuracy_vs_rtr",
           "region_confusion_markdown", "summarize", "summarize_cell", "summaries_markdown", "intervals_markdown"]

log = logging.getLogger(__name__)


class EvalItem(BaseModel):
    """One evaluation question."""

    id: str
    image: str = Field(description="Absolute path of the image.")
    question: str
    answers: list[str]
    benchmark: str = "default"
    metric: str = Field("exact", description="Metric name, see awares_train.metrics.score.")
    needs_crop: bool | None = Field(None, description="Ground truth of the crop decision, where known.")
    target_regions: list[str] | None = None


class ItemResult(BaseModel):
    id: str
    benchmark: str
    mode: str
    answer: str
    score: float
    rtr: float | None
    pixel_ratio: float
    regions: list[str]
    rounds: int
    wall_s: float
    needs_crop: bool | None = None
    target_regions: list[str] | None = None
    error: str | None = None


class ModeSummary(BaseModel):
    """Aggregates of one (label, mode, benchmark) cell."""

    label: str
    mode: str
    benchmark: str
    n: int
    accuracy: float
    mean_rtr: float | None
    mean_pixel_ratio: float
    crops_per_sample: float
    no_crop_share: float
    mean_rounds: float
    mean_latency_s: float
    p50_latency_s: float
    errors: int
    decision_accuracy: float | None = None
    region_accuracy: float | None = None
    #: 95% confidence intervals: Wilson for rates (accuracy when every score is 0/1, decision, region),
    #: Student's t for means (RTR; accuracy with partial-credit scores). None where a cell has too few items.
    accuracy_ci: tuple[float, float] | None = None
    mean_rtr_ci: tuple[float, float] | None = None
    decision_ci: tuple[float, float] | None = None
    region_ci: tuple[float, float] | None = None
    #: questions the decision and region accuracies are computed over
    n_decision: int | None = None
    n_region: int | None = None
    #: awares mode, questions with known target regions: target -> requested -> count (names joined by ``+``;
    #: ``none`` = answered without a crop). Shows *how* the region choice fails, e.g. the right row, wrong column.
    region_confusion: dict[str, dict[str, int]] | None = None


class EvalReport(BaseModel):
    label: str
    backend: str
    summaries: list[ModeSummary]
    items: list[ItemResult]

    def to_markdown(self) -> str:
        parts = [summaries_markdown(self.summaries), "", "With 95% confidence intervals (Wilson for rates, t for means):",
                 "", intervals_markdown(self.summaries)]
        with_regions = [s for s in self.summaries if s.region_confusion]
        # one table per mode: the overall cell, or the only benchmark's cell where there is no overall one
        for s in [s for s in with_regions if s.benchmark == "overall"] or with_regions:
            parts += ["", f"Regions requested by `{s.label}` ({s.mode}, {s.benchmark}):", "",
                      region_confusion_markdown(s)]
        return "\n".join(parts)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``report.json``, ``report.md``, ``items.jsonl`` and ``accuracy_vs_rtr.png`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(self.model_dump_json(indent=2, exclude={"items"}))
        (out / "report.md").write_text(self.to_markdown() + "\n")
        with (out / "items.jsonl").open("w") as f:
            for item in self.items:
                f.write(item.model_dump_json() + "\n")
        plot_accuracy_vs_rtr(self.summaries, out / "accuracy_vs_rtr.png")
        return out


def load_eval_items(
    path: str | Path, *, benchmark: str | None = None, metric: str | None = None, limit: int | None = None
) -> list[EvalItem]:
    """Load questions from a JSONL file (synthetic ``records.jsonl``, trajectories ``data.jsonl`` or our own).

    Each line needs ``image`` (path relative to the file's folder or absolute), ``question`` and ``answers``;
    ``id``, ``benchmark``, ``metric``, ``needs_crop`` (or ``label``) and ``target_regions`` are used when present.
    """
    path = Path(path)
    items: list[EvalItem] = []
    with path.open() as f:
        for n, line in enumerate(f):
            if not line.strip():
                continue
            rec = json.loads(line)
            image = Path(rec["image"])
            if not image.is_absolute():
                image = path.parent / image
            needs = rec.get("needs_crop")
            if needs is None and rec.get("label") in ("direct", "crop"):
                needs = rec["label"] == "crop"
            answers = rec.get("answers") or [rec["answer"]]
            items.append(
                EvalItem(
                    id=str(rec.get("id", n)),
                    image=str(image),
                    question=rec["question"],
                    answers=[str(a) for a in answers],
                    benchmark=benchmark or rec.get("benchmark") or rec.get("source") or path.parent.name,
                    metric=metric or rec.get("metric") or "exact",
                    needs_crop=needs,
                    target_regions=rec.get("target_regions"),
                )
            )
            if limit and len(items) >= limit:
                break
    return items


def evaluate(
    items: Sequence[EvalItem],
    backend: Any,
    modes: Iterable[str] = ("awares",),
    *,
    label: str | None = None,
    concurrency: int = 1,
    progress: bool = True,
    scorer: Callable[[str, str, list[str]], float] | None = None,
    **loop_kwargs: Any,
) -> EvalReport:
    """Evaluate ``backend`` on ``items`` in each of ``modes``.

    Args:
        items: The questions.
        backend: Backend object or spec string (see :func:`awares_tool.backends.resolve_backend`).
        modes: Loop modes to run (``awares``, ``lowres``, ``fullres``, ``all_crops``, ``full_on_request``).
        label: Name of this model/setting in the tables and plots (default: the backend name).
        concurrency: Parallel questions (useful for remote backends).
        progress: Show a progress bar.
        scorer: ``(metric, prediction, answers) -> score in [0, 1]``; default :func:`awares_train.metrics.score`.
        **loop_kwargs: Passed to :func:`awares_tool.crop_on_demand` (crop set, low-res policy, limits ...).
    """
    be = resolve_backend(backend)
    if scorer is None:
        from awares_train.metrics import score as scorer  # type: ignore[assignment]
    name = label or getattr(be, "name", type(be).__name__)
    results: list[ItemResult] = []
    for mode in modes:
        log.info("evaluating %s in mode %s on %d questions", name, mode, len(items))
        outs = crop_on_demand_batch(
            [(it.image, it.question) for it in items], backend=be, mode=mode, concurrency=concurrency,
            progress=progress, **loop_kwargs,
        )
        for it, res in zip(items, outs):
            results.append(
                ItemResult(
                    id=it.id, benchmark=it.benchmark, mode=mode, answer=res.answer,
                    score=scorer(it.metric, res.answer, it.answers) if res.answered else 0.0,
                    rtr=res.tokens.rtr, pixel_ratio=res.tokens.pixel_ratio, regions=res.regions, rounds=res.rounds,
                    wall_s=res.wall_s, needs_crop=it.needs_crop, target_regions=it.target_regions, error=res.error,
                )
            )
    return EvalReport(label=name, backend=getattr(be, "name", ""), summaries=summarize(results, name), items=results)


def summarize(results: Sequence[ItemResult], label: str) -> list[ModeSummary]:
    """Per (mode, benchmark) cells plus an ``overall`` cell per mode (with 95% confidence intervals)."""
    cells: dict[tuple[str, str], list[ItemResult]] = {}
    for r in results:
        cells.setdefault((r.mode, r.benchmark), []).append(r)
        cells.setdefault((r.mode, "overall"), []).append(r)
    benchmarks = {r.benchmark for r in results}
    out = []
    for (mode, bench), rs in cells.items():
        if bench == "overall" and len(benchmarks) == 1:
            continue
        out.append(_summary(label, mode, bench, rs))
    return out


def summarize_cell(results: Sequence[ItemResult], label: str, mode: str, name: str) -> ModeSummary:
    """One cell over any subset of results (e.g. the items above a pixel cap), named ``name``.

    Every result must be of ``mode``.
    """
    if any(r.mode != mode for r in results):
        raise ValueError(f"summarize_cell({name!r}): results of other modes than {mode!r}")
    if not results:
        raise ValueError(f"summarize_cell({name!r}): no results")
    return _summary(label, mode, name, list(results))


def _summary(label: str, mode: str, bench: str, rs: list[ItemResult]) -> ModeSummary:
    rtrs = [r.rtr for r in rs if r.rtr is not None]
    lat = [r.wall_s for r in rs]
    known = [r for r in rs if r.needs_crop is not None]
    decision = decision_ci = None
    if known and mode == "awares":
        hits = sum((len(r.regions) > 0) == r.needs_crop for r in known)
        decision, decision_ci = hits / len(known), wilson_interval(hits, len(known))
    targeted = [r for r in rs if r.needs_crop and r.target_regions]
    region = confusion = region_ci = None
    if targeted and mode == "awares":
        hits = sum(set(r.regions) == set(r.target_regions or []) for r in targeted)
        region, region_ci = hits / len(targeted), wilson_interval(hits, len(targeted))
        confusion = {}
        for r in targeted:
            confusion.setdefault(_region_key(r.target_regions or []), Counter())[_region_key(r.regions)] += 1
    return ModeSummary(
        label=label, mode=mode, benchmark=bench, n=len(rs),
        accuracy=sum(r.score for r in rs) / len(rs),
        mean_rtr=sum(rtrs) / len(rtrs) if rtrs else None,
        mean_pixel_ratio=sum(r.pixel_ratio for r in rs) / len(rs),
        crops_per_sample=sum(len(r.regions) for r in rs) / len(rs),
        no_crop_share=sum(not r.regions for r in rs) / len(rs),
        mean_rounds=sum(r.rounds for r in rs) / len(rs),
        mean_latency_s=sum(lat) / len(lat), p50_latency_s=statistics.median(lat),
        errors=sum(r.error is not None for r in rs),
        decision_accuracy=decision, region_accuracy=region, region_confusion=confusion,
        accuracy_ci=score_interval([r.score for r in rs]), mean_rtr_ci=_nonnegative(t_interval(rtrs)),
        decision_ci=decision_ci, region_ci=region_ci,
        n_decision=len(known) if decision is not None else None,
        n_region=len(targeted) if region is not None else None,
    )


def _nonnegative(ci: tuple[float, float] | None) -> tuple[float, float] | None:
    """RTR is never negative; a t interval of few items can reach below 0."""
    return None if ci is None else (max(0.0, ci[0]), ci[1])


def _region_key(names: Sequence[str]) -> str:
    return "+".join(sorted(set(names), key=_natural)) or "none"


def _natural(name: str) -> tuple[int, str]:
    return (int(name), name) if name.isdigit() else (1 << 30, name)


def _key_order(key: str) -> list[tuple[int, str]]:
    return [_natural(n) for n in key.split("+")]


def region_confusion_markdown(summary: ModeSummary) -> str:
    """Target regions (rows) against the regions the model requested (columns), as a Markdown table."""
    confusion = summary.region_confusion or {}
    targets = sorted(confusion, key=_key_order)
    asked = sorted({a for row in confusion.values() for a in row}, key=_key_order)
    lines = ["| target \\ requested | " + " | ".join(asked) + " |", "|---|" + "---:|" * len(asked)]
    lines += [f"| {t} | " + " | ".join(str(confusion[t].get(a, 0)) for a in asked) + " |" for t in targets]
    return "\n".join(lines)


def summaries_markdown(summaries: Sequence[ModeSummary]) -> str:
    """A Markdown table of summaries (one row per label/mode/benchmark)."""
    head = ("| model | mode | benchmark | n | accuracy | mean RTR | crops/sample | no-crop share | decision acc "
            "| region acc | latency s (mean) | errors |")
    lines = [head, "|" + "---|" * 12]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    for s in summaries:
        rtr = "-" if s.mean_rtr is None else f"{s.mean_rtr:.3f}"
        lines.append(
            f"| {s.label} | {s.mode} | {s.benchmark} | {s.n} | {pct(s.accuracy)} | {rtr} | {s.crops_per_sample:.2f} "
            f"| {pct(s.no_crop_share)} | {pct(s.decision_accuracy)} | {pct(s.region_accuracy)} "
            f"| {s.mean_latency_s:.3f} | {s.errors} |"
        )
    return "\n".join(lines)


def _ci(v: float | None, ci: tuple[float, float] | None, *, pct: bool = True) -> str:
    if v is None:
        return "-"
    f = (lambda x: f"{100 * x:.1f}") if pct else (lambda x: f"{x:.3f}")
    return f"{f(v)} [{f(ci[0])}, {f(ci[1])}]" if ci else f(v)


def intervals_markdown(summaries: Sequence[ModeSummary], *, oracle_rtr: dict[str, float] | None = None) -> str:
    """A Markdown table of each cell's accuracy, RTR, decision and region accuracy with 95% intervals.

    Args:
        summaries: The cells.
        oracle_rtr: Optional benchmark -> oracle mean RTR (every item given exactly its target crops), shown
            beside the measured RTR.
    """
    cols = ["model", "mode", "benchmark", "n", "accuracy % [95% CI]", "mean RTR [95% CI]"]
    if oracle_rtr is not None:
        cols.append("oracle RTR")
    cols += ["decision acc % [95% CI]", "region acc % [95% CI] (n)"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for s in summaries:
        row = [s.label, s.mode, s.benchmark, str(s.n), _ci(s.accuracy, s.accuracy_ci),
               _ci(s.mean_rtr, s.mean_rtr_ci, pct=False)]
        if oracle_rtr is not None:
            o = oracle_rtr.get(s.benchmark)
            row.append("-" if o is None else f"{o:.3f}")
        region = _ci(s.region_accuracy, s.region_ci)
        row += [_ci(s.decision_accuracy, s.decision_ci), region + (f" ({s.n_region})" if s.n_region else "")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _short_label(label: str) -> str:
    """``transformers:/a/b/tiny-awares`` -> ``tiny-awares``: plots have no room for paths."""
    if "#" in label:  # openai:URL#MODEL
        return label.rsplit("#", 1)[-1] or label
    tail = label.rsplit(":", 1)[-1] if "/" in label else label
    return tail.rstrip("/").rsplit("/", 1)[-1] or label


def plot_accuracy_vs_rtr(summaries: Sequence[ModeSummary], path: str | Path, *, title: str | None = None,
                         benchmark: str | None = None, oracle_rtr: float | None = None) -> Path:
    """Scatter accuracy against mean RTR, one point per (label, mode) on the overall (or only) benchmark.

    Cells with confidence intervals get error bars on both axes; ``benchmark`` picks another cell than the
    overall one, and ``oracle_rtr`` draws the oracle's RTR as a dashed vertical line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = {s.benchmark for s in summaries}
    if benchmark is None:
        benchmark = "overall" if "overall" in benches else next(iter(benches))
    pick = [s for s in summaries if s.benchmark == benchmark]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    if oracle_rtr is not None:
        ax.axvline(oracle_rtr, color="grey", linestyle="--", linewidth=1, label=f"oracle RTR {oracle_rtr:.3f}")
    with_ci = any(s.accuracy_ci or s.mean_rtr_ci for s in pick)
    for s in pick:
        if s.mean_rtr is None:
            continue
        xerr = yerr = None
        if s.mean_rtr_ci:
            xerr = [[max(0.0, s.mean_rtr - s.mean_rtr_ci[0])], [max(0.0, s.mean_rtr_ci[1] - s.mean_rtr)]]
        if s.accuracy_ci:
            yerr = [[max(0.0, 100 * (s.accuracy - s.accuracy_ci[0]))], [max(0.0, 100 * (s.accuracy_ci[1] - s.accuracy))]]
        name = f"{_short_label(s.label)} / {s.mode}"
        if with_ci:  # error bars: points are named in the legend, where long names cannot cover the plot
            ax.errorbar(s.mean_rtr, 100 * s.accuracy, xerr=xerr, yerr=yerr, fmt="o", markersize=7, capsize=3,
                        label=name)
        else:
            ax.scatter(s.mean_rtr, 100 * s.accuracy, s=60)
            ax.annotate(name, (s.mean_rtr, 100 * s.accuracy), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if with_ci or oracle_rtr is not None:
        ax.legend(loc="best", fontsize=7)
    ax.set_xlabel("mean RTR (visual tokens / full-resolution tokens)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "accuracy vs visual-token cost", fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_xlim(left=0)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
