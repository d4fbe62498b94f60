"""The benchmark reproduction's results: cells with 95% intervals per seed, their spread over seeds, the issue's
targets, training curves of every GRPO run, and wall times.

Written from whatever evaluations exist, so a report can be drawn while later seeds still run
(``awares-train reproduce --report-only``); a target whose runs are missing says so instead of holding or not.
"""

from __future__ import annotations

import json
import platform
import statistics
from pathlib import Path
from typing import Any

from awares_train.eval.harness import ModeSummary, intervals_markdown, plot_accuracy_vs_rtr, region_confusion_markdown
from awares_train.reproduce.history import SMOOTH, plot_grpo_curves
from awares_train.reproduce.pipeline import grpo_runs, seed_dir
from awares_train.reproduce.report import (PAPER_NO_CROP, _cpus, _label_no_crop_share, _pct, _shown, base_minutes_line,
                                          base_model_summary)

__all__ = ["write_bench_report", "load_cells", "check_bench_targets", "aggregate", "CELLS"]

#: Cells of the benchmark shown in the tables (``run_bench``'s slices; kinds are in each run's report.md).
CELLS = ("overall", "needs-crop", "lowres-ok", "two-crop", "above-cap", "below-cap")
#: Cells of the per-seed tables: the slices and each item kind.
SEED_CELLS = ("overall", "document", "chart", "scene", "needs-crop", "lowres-ok", "two-crop", "above-cap", "below-cap")
#: Figures aggregated over seeds.
FIGURES = ("accuracy", "mean_rtr", "no_crop_share", "decision_accuracy", "region_accuracy")

Cells = dict[tuple[str, str, str], ModeSummary]
"""(run label, mode, cell) -> summary, for one seed (the base's cells are shared by every seed)."""


def _report(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def load_cells(cfg: Any, seed: int) -> tuple[Cells, dict[str, float]]:
    """The cells of the base and of one seed's runs that have been evaluated, and the test split's oracle RTRs."""
    cells: Cells = {}
    oracle: dict[str, float] = {}
    base = _report(cfg.work / "eval" / "base" / "report.json")
    runs = [(base, "base")] + [(_report(seed_dir(cfg, seed) / "eval" / n / "report.json"), n)
                               for n in ["sft", *grpo_runs(cfg)]]
    for data, name in runs:
        if data is None:
            continue
        oracle = oracle or data.get("oracle_rtr", {})
        for s in data["summaries"]:
            summary = ModeSummary(**{**s, "label": name})
            cells[(name, summary.mode, summary.benchmark)] = summary
    return cells, oracle


def _get(cells: Cells, run: str, cell: str = "overall") -> ModeSummary | None:
    mode = "awares" if run not in ("fullres", "lowres") else run
    return cells.get(("base" if run in ("fullres", "lowres") else run, mode, cell))


def aggregate(per_seed: dict[int, Cells], run: str, cell: str) -> dict[str, Any]:
    """Mean, sample standard deviation, min and max over seeds of each figure of one run's cell."""
    out: dict[str, Any] = {"seeds": []}
    values: dict[str, list[float]] = {f: [] for f in FIGURES}
    for seed, cells in sorted(per_seed.items()):
        s = _get(cells, run, cell)
        if s is None:
            continue
        out["seeds"].append(seed)
        for f in FIGURES:
            v = getattr(s, f)
            if v is not None:
                values[f].append(float(v))
    for f, vs in values.items():
        if vs:
            out[f] = {"mean": statistics.fmean(vs), "sd": statistics.stdev(vs) if len(vs) > 1 else 0.0,
                      "min": min(vs), "max": max(vs)}
    return out


def plotted_summaries(per_seed: dict[int, Cells], runs: list[str], cell: str) -> list[ModeSummary]:
    """One point per run for the accuracy-vs-RTR plot: the cell itself (95% CIs) where one seed or a shared
    evaluation gave it, else the mean over seeds with the min-max spread as its bars (not a confidence interval)."""
    out = []
    for run in runs:
        cells = [s for s in (_get(c, run, cell) for _, c in sorted(per_seed.items())) if s is not None]
        if len({(s.accuracy, s.mean_rtr) for s in cells}) <= 1:  # one seed, or a shared evaluation (the base)
            out += cells[:1]
            continue
        acc = [s.accuracy for s in cells]
        rtr = [s.mean_rtr for s in cells if s.mean_rtr is not None]
        spread = {"accuracy": statistics.fmean(acc), "accuracy_ci": (min(acc), max(acc))}
        if rtr:
            spread.update(mean_rtr=statistics.fmean(rtr), mean_rtr_ci=(min(rtr), max(rtr)))
        out.append(cells[0].model_copy(update=spread))
    return out


def _mean(agg: dict[str, Any], figure: str) -> float | None:
    v = agg.get(figure)
    return None if v is None else v["mean"]


def check_bench_targets(per_seed: dict[int, Cells]) -> dict[str, Any]:
    """The issue's targets on the mean over seeds, each with the per-seed numbers (and intervals) behind it."""
    def agg(run: str, cell: str = "overall") -> dict[str, Any]:
        return aggregate(per_seed, run, cell)

    def measured(*aggs: dict[str, Any]) -> bool:
        return all(a["seeds"] for a in aggs)

    full, grpo, sft = agg("fullres"), agg("grpo"), agg("sft")
    full_cap, grpo_cap = agg("fullres", "above-cap"), agg("grpo", "above-cap")
    grpo_nc, no_ans_nc = agg("grpo", "needs-crop"), agg("grpo-no-answer", "needs-crop")
    targets: dict[str, Any] = {}

    def add(name: str, ok: bool | None, **numbers: Any) -> None:
        targets[name] = {"holds": ok, **{k: v for k, v in numbers.items() if v is not None}}

    def ci(run: str, cell: str = "overall") -> list[Any]:
        out = []
        for seed, cells in sorted(per_seed.items()):
            s = _get(cells, run, cell)
            if s is not None:
                out.append({"seed": seed, "accuracy": s.accuracy, "ci": s.accuracy_ci, "rtr": s.mean_rtr})
        return out

    if measured(full, grpo):
        gap = 100 * (_mean(full, "accuracy") - _mean(grpo, "accuracy"))  # type: ignore[operator]
        rtr = _mean(grpo, "mean_rtr")
        add("grpo_within_1pt_of_fullres_at_rtr_0.40", gap <= 1.0 and rtr is not None and rtr <= 0.40,
            gap_points=round(gap, 2), grpo_rtr=rtr, fullres=ci("fullres"), grpo=ci("grpo"))
    else:
        add("grpo_within_1pt_of_fullres_at_rtr_0.40", None)
    if measured(grpo, sft):
        a, b = _mean(grpo, "no_crop_share"), _mean(sft, "no_crop_share")
        add("grpo_no_crop_share_above_sft", a > b, grpo=a, sft=b)  # type: ignore[operator]
        acc_kept = _mean(grpo, "accuracy") >= _mean(sft, "accuracy") - 0.01  # type: ignore[operator]
        add("full_reward_restraint_at_kept_accuracy",
            acc_kept and _mean(grpo, "mean_rtr") <= _mean(sft, "mean_rtr"),  # type: ignore[operator]
            grpo_accuracy=_mean(grpo, "accuracy"), sft_accuracy=_mean(sft, "accuracy"),
            grpo_rtr=_mean(grpo, "mean_rtr"), sft_rtr=_mean(sft, "mean_rtr"))
    else:
        add("grpo_no_crop_share_above_sft", None)
        add("full_reward_restraint_at_kept_accuracy", None)
    for target, run in (("no_tool_cost_crops_more_and_rtr_rises", "grpo-no-tool-cost"),
                        ("no_request_price_crops_more_and_rtr_rises", "grpo-no-request-cost")):
        ablated = agg(run)
        if not measured(ablated, grpo):
            add(target, None)
            continue
        more_crops = _mean(ablated, "no_crop_share") < _mean(grpo, "no_crop_share")  # type: ignore[operator]
        more_rtr = _mean(ablated, "mean_rtr") > _mean(grpo, "mean_rtr")  # type: ignore[operator]
        add(target, more_crops and more_rtr,
            crop_rate=1 - _mean(ablated, "no_crop_share"), grpo_crop_rate=1 - _mean(grpo, "no_crop_share"),  # type: ignore[operator]
            rtr=_mean(ablated, "mean_rtr"), grpo_rtr=_mean(grpo, "mean_rtr"))
    if measured(no_ans_nc, grpo_nc):
        a, b = _mean(no_ans_nc, "accuracy"), _mean(grpo_nc, "accuracy")
        add("no_answer_reward_needs_crop_accuracy_falls", a < b, accuracy=a, grpo_accuracy=b)  # type: ignore[operator]
    else:
        add("no_answer_reward_needs_crop_accuracy_falls", None)
    if measured(full_cap, grpo_cap):
        a, b = _mean(grpo_cap, "accuracy"), _mean(full_cap, "accuracy")
        fewer = _mean(grpo_cap, "mean_rtr") < _mean(full_cap, "mean_rtr")  # type: ignore[operator]
        add("above_cap_awares_beats_fullres_at_fewer_tokens", a > b and fewer,  # type: ignore[operator]
            grpo_accuracy=a, fullres_accuracy=b, grpo_rtr=_mean(grpo_cap, "mean_rtr"),
            fullres_rtr=_mean(full_cap, "mean_rtr"), grpo=ci("grpo", "above-cap"), fullres=ci("fullres", "above-cap"))
    else:
        add("above_cap_awares_beats_fullres_at_fewer_tokens", None)
    return targets


def _spread(v: dict[str, float] | None, pct: bool = True) -> str:
    if v is None:
        return "-"
    f = (lambda x: f"{100 * x:.1f}") if pct else (lambda x: f"{x:.3f}")
    return f"{f(v['mean'])} ± {f(v['sd'])} ({f(v['min'])}-{f(v['max'])})"


def _targets_markdown(targets: dict[str, Any]) -> list[str]:
    lines = ["| target | holds | numbers (mean over seeds; per seed: accuracy [95% CI], RTR) |", "|---|---|---|"]
    for name, t in targets.items():
        held = {True: "yes", False: "**no**", None: "not measured yet"}[t["holds"]]
        nums = []
        for k, v in t.items():
            if k == "holds":
                continue
            if isinstance(v, list):
                v = "; ".join(f"s{r['seed']} {100 * r['accuracy']:.1f}"
                              + (f" [{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}]" if r["ci"] else "")
                              + (f" @ {r['rtr']:.3f}" if r["rtr"] is not None else "") for r in v)
            elif isinstance(v, float):
                v = f"{v:.3f}"
            nums.append(f"{k}={v}")
        lines.append(f"| {name} | {held} | {', '.join(nums)} |")
    return lines


def write_bench_report(cfg: Any, timings: dict[str, float]) -> dict[str, Any]:
    """Write ``results.json``, ``results.md``, ``accuracy_vs_rtr*.png`` and ``grpo_curves/*.png`` to ``cfg.docs``."""
    docs = Path(cfg.docs)
    (docs / "grpo_curves").mkdir(parents=True, exist_ok=True)
    seeds = list(cfg.seeds or [cfg.seed])
    per_seed: dict[int, Cells] = {}
    oracle: dict[str, float] = {}
    for seed in seeds:
        per_seed[seed], o = load_cells(cfg, seed)
        oracle = oracle or o
    runs = ["fullres", "lowres", "sft", *grpo_runs(cfg)]
    aggregated = {run: {cell: aggregate(per_seed, run, cell) for cell in CELLS} for run in runs}
    targets = check_bench_targets(per_seed)
    no_crop = {"labels": _label_no_crop_share(cfg.work / "trajectories" / "stats.json")
               if (cfg.work / "trajectories" / "stats.json").exists() else None,
               "sft": _mean(aggregated["sft"]["overall"], "no_crop_share"),
               "grpo": _mean(aggregated["grpo"]["overall"], "no_crop_share")}
    curves = {}
    for seed in seeds:
        for run in grpo_runs(cfg):
            png = plot_grpo_curves(seed_dir(cfg, seed) / run, docs / "grpo_curves" / f"seed-{seed}-{run}.png",
                                   title=f"{run}, seed {seed}")
            if png is not None:
                curves[f"seed-{seed}/{run}"] = str(png.relative_to(docs))
    listed = ", ".join(map(str, seeds))
    bars = f"seed {seeds[0]}, 95% CI" if len(seeds) == 1 else f"seeds {listed}: mean, min-max; base: 95% CI"
    overall = plotted_summaries(per_seed, runs, "overall")
    above = plotted_summaries(per_seed, runs, "above-cap")
    if overall:
        plot_accuracy_vs_rtr(overall, docs / "accuracy_vs_rtr.png", oracle_rtr=oracle.get("overall"),
                             title=f"awares-bench (tiny): accuracy vs visual tokens\n({bars})")
    if above:
        plot_accuracy_vs_rtr(above, docs / "accuracy_vs_rtr_above_cap.png", benchmark="above-cap",
                             oracle_rtr=oracle.get("above-cap"), title=f"items above the pixel cap ({bars})")
    base_card = json.loads((Path(cfg.base) / "awares.json").read_text()) if (Path(cfg.base) / "awares.json").exists() else {}
    base_model = base_model_summary(base_card)
    one_seed = sum(v for k, v in timings.items() if not k.startswith("seed-") or k.startswith(f"seed-{seeds[0]}/"))
    results = {
        "config": {**json.loads(cfg.model_dump_json()), "base": _shown(cfg.base)},
        "per_seed": {str(seed): [s.model_dump() for s in cells.values()] for seed, cells in per_seed.items()},
        "aggregated": aggregated, "oracle_rtr": oracle, "no_crop_share": no_crop,
        "paper_no_crop_share": PAPER_NO_CROP, "targets": targets, "stage_seconds": timings,
        "minutes_one_seed": round(one_seed / 60, 1), "total_minutes": round(sum(timings.values()) / 60, 1),
        "grpo_curves": curves, "base_model": base_model,
        "machine": {"cpus": _cpus(), "platform": platform.platform()},
    }
    (docs / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (docs / "results.md").write_text(_markdown(cfg, seeds, per_seed, aggregated, oracle, no_crop, targets,
                                               timings, results, curves))
    return results


def _markdown(cfg: Any, seeds: list[int], per_seed: dict[int, Cells], aggregated: dict[str, Any],
              oracle: dict[str, float], no_crop: dict[str, float | None], targets: dict[str, Any],
              timings: dict[str, float], results: dict[str, Any], curves: dict[str, str]) -> str:
    lines = [
        "# AwaRes reproduction on awares-bench (tiny profile): results", "",
        f"Written by `awares-train reproduce` (`make reproduce`) from `{_shown(cfg.base)}`: the benchmark's train "
        f"split ({cfg.n_train} items, seed {cfg.bench_seed}) for trajectories, SFT and GRPO; its test split "
        f"({cfg.n_test} items) for every row below, through `run_bench` with the profile's pixel cap (448x448). "
        f"Training seeds: {', '.join(map(str, seeds))}. Accuracy is exact match; intervals are 95% (Wilson for "
        "rates, Student's t for the mean RTR); the spread over seeds is mean ± sd (min-max).", "",
        "![accuracy vs RTR](accuracy_vs_rtr.png)", "",
        "## Targets", "",
        *_targets_markdown(targets), "",
        "## Over seeds", "",
        "| run | cell | seeds | accuracy % | mean RTR | no-crop share % | decision acc % | region acc % |",
        "|---|---|---:|---|---|---|---|---|",
    ]
    for run, by_cell in aggregated.items():
        for cell, agg in by_cell.items():
            if agg["seeds"]:
                lines.append(f"| {run} | {cell} | {len(agg['seeds'])} | {_spread(agg.get('accuracy'))} | "
                             f"{_spread(agg.get('mean_rtr'), pct=False)} | {_spread(agg.get('no_crop_share'))} | "
                             f"{_spread(agg.get('decision_accuracy'))} | {_spread(agg.get('region_accuracy'))} |")
    lines += ["", "## Share of no-crop decisions", "",
              "| | labels (SFT data) | after SFT | after GRPO |", "|---|---:|---:|---:|",
              f"| this run (mean over seeds) | {_pct(no_crop['labels'])} | {_pct(no_crop['sft'])} | "
              f"{_pct(no_crop['grpo'])} |",
              f"| paper | {_pct(PAPER_NO_CROP['labels'])} | {_pct(PAPER_NO_CROP['sft'])} | "
              f"{_pct(PAPER_NO_CROP['grpo'])} |", ""]
    for seed in seeds:
        cells = per_seed[seed]
        shown = sorted((s for (_, _, cell), s in cells.items() if cell in SEED_CELLS),
                       key=lambda s: (SEED_CELLS.index(s.benchmark), s.label != "base"))
        if not shown:
            continue
        lines += [f"## Seed {seed}: every cell with 95% intervals", "", intervals_markdown(shown, oracle_rtr=oracle),
                  ""]
        for run in ("sft", "grpo"):  # SFT's table shows the base's grounding; GRPO's what the reward made of it
            asked = cells.get((run, "awares", "overall"))
            if asked is not None and asked.region_confusion:
                lines += [f"Regions requested by {run.upper()} (seed {seed}) for the items that need a crop (rows: "
                          "target; `none`: answered without a crop):", "", region_confusion_markdown(asked), ""]
    if curves:
        lines += ["## GRPO training curves", "",
                  f"Per step (faint; bold: the running mean over {SMOOTH} steps): the weighted reward, each reward "
                  "term (unweighted), `frac_reward_zero_std` (groups whose "
                  "8 rollouts all scored the same: no learning signal), the tool-call rate and no-crop share, and "
                  "the rollouts' accuracy and RTR (read from each run's `metrics.jsonl` or `trainer_state.json`).", ""]
        lines += [f"![{name}]({path})" for name, path in curves.items()] + [""]
    lines += ["## Wall time per stage", "", "| stage | minutes |", "|---|---:|"]
    lines += [f"| {k} | {v / 60:.1f} |" for k, v in timings.items()]
    lines += [f"| **one seed (shared stages + seed {seeds[0]})** | **{results['minutes_one_seed']}** |",
              f"| **all** | **{results['total_minutes']}** |", "",
              f"Machine: {results['machine']['cpus']} CPU cores, {results['machine']['platform']}, {cfg.threads} torch "
              "thread(s) per stage. Each time is that of the run that completed the stage (a resumed stage keeps "
              "only its last run's time).", ""]
    base = results["base_model"]
    if base["training_minutes"]:
        lines += ["## Base model", "", base_minutes_line(cfg.base, base["training_minutes"],
                                                         results["minutes_one_seed"], "the stages above for one seed",
                                                         base.get("gpu_minutes", 0.0)), ""]
    if base["heldout"]:
        lines += ["Its held-out accuracy (teacher-forced exact match, from its `awares.json`):", "",
                  "| " + " | ".join(base["heldout"]) + " |", "|" + "---:|" * len(base["heldout"]),
                  "| " + " | ".join(f"{v:.2f}" for v in base["heldout"].values()) + " |", ""]
    return "\n".join(lines)
