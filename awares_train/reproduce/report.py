"""The reproduction's results: one table, the paper's comparison points, the targets, and a plot."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from awares_train.eval.harness import ModeSummary, plot_accuracy_vs_rtr, region_confusion_markdown, summaries_markdown

__all__ = ["base_minutes_line", "write_report", "oracle_rtr", "check_targets"]

#: The paper's shares of no-crop decisions: in the SFT labels, after SFT, after GRPO.
PAPER_NO_CROP = {"labels": 0.808, "sft": 0.463, "grpo": 0.722}


def oracle_rtr(records_path: Path, family: str = "qwen2.5-vl", crop_set: str = "awares9",
               lowres: Any = None) -> float:
    """Mean RTR when every test question gets exactly its target crops (no crop where none is needed)."""
    from awares_tool.episode.costs import oracle_rtr as episode_oracle

    rtrs = []
    for line in records_path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        value = episode_oracle((rec["width"], rec["height"]), rec.get("target_regions") or [], family,
                               crop_set=crop_set, lowres=lowres)
        if value is not None:
            rtrs.append(value)
    return sum(rtrs) / len(rtrs) if rtrs else float("nan")


def _overall(summaries: list[ModeSummary]) -> dict[tuple[str, str], ModeSummary]:
    return {(s.label, s.mode): s for s in summaries if s.benchmark == "overall"}


def check_targets(cells: dict[tuple[str, str], ModeSummary]) -> dict[str, Any]:
    """The issue's targets, each with the measured numbers and whether it holds."""
    full, low = cells[("base", "fullres")], cells[("base", "lowres")]
    grpo, sft = cells[("grpo", "awares")], cells[("sft", "awares")]
    gap = 100 * (full.accuracy - grpo.accuracy)
    return {
        "grpo_within_1pt_of_fullres_at_rtr_0.40": {
            "holds": gap <= 1.0 and (grpo.mean_rtr or 1.0) <= 0.40,
            "fullres_accuracy": full.accuracy, "grpo_accuracy": grpo.accuracy, "grpo_rtr": grpo.mean_rtr,
            "gap_points": round(gap, 2)},
        "grpo_clearly_above_lowres": {"holds": grpo.accuracy - low.accuracy >= 0.05,
                                      "lowres_accuracy": low.accuracy, "grpo_accuracy": grpo.accuracy},
        "grpo_better_than_sft_on_accuracy_or_rtr": {
            "holds": grpo.accuracy > sft.accuracy or (grpo.mean_rtr or 1.0) < (sft.mean_rtr or 1.0),
            "sft_accuracy": sft.accuracy, "sft_rtr": sft.mean_rtr, "grpo_accuracy": grpo.accuracy,
            "grpo_rtr": grpo.mean_rtr},
    }


def base_model_summary(card: dict[str, Any]) -> dict[str, Any]:
    """What the base model's ``awares.json`` says of its own training: minutes per stage and held-out accuracy.

    A base trained here from random weights (``awares_train.tiny.train_base``, then for the benchmark
    ``awares_train.tiny.train_bench_base``) records both, so the report can state the time of the whole recipe
    from scratch; any other base (a pretrained VLM) gives empty fields.
    """
    training = card.get("training") or {}
    minutes = {stage: training[f"stage_{stage}_minutes"] for stage in ("a", "b", "bench")
               if isinstance(training.get(f"stage_{stage}_minutes"), (int, float))}
    phases = [p for p in training.get("bench_phases") or [] if isinstance(p.get("minutes"), (int, float))]
    if phases:  # a curriculum: every recorded phase, the last one (stage_bench) included
        minutes["bench"] = round(sum(p["minutes"] for p in phases), 2)
    # phases recorded without a device ran before the record had one: all of those ran on the CPU
    gpu = round(sum(p["minutes"] for p in phases if not str(p.get("device") or "cpu").startswith("cpu")), 2)
    metrics = card.get("metrics") or {}
    heldout = next((v for k, v in metrics.items() if k.startswith("heldout") and isinstance(v, dict)), {})
    return {"training_minutes": minutes, "heldout": heldout, **({"gpu_minutes": gpu} if gpu else {})}


def _label_no_crop_share(stats_path: Path) -> float | None:
    labels = json.loads(stats_path.read_text()).get("labels", {})
    kept = labels.get("direct", 0) + labels.get("crop", 0)
    return labels.get("direct", 0) / kept if kept else None


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def write_report(cfg: Any, runs: list[str], timings: dict[str, float]) -> dict[str, Any]:
    """Gather the eval reports of ``runs`` and write ``results.json``, ``results.md`` and the plot to ``cfg.docs``."""
    summaries: list[ModeSummary] = []
    for name in runs:
        data = json.loads((cfg.work / "eval" / name / "report.json").read_text())
        summaries += [ModeSummary(**s) for s in data["summaries"]]
    cells = _overall(summaries)
    base_card = json.loads((Path(cfg.base) / "awares.json").read_text())
    oracle = oracle_rtr(cfg.work / "data" / "test" / "records.jsonl", base_card.get("family") or "qwen2.5-vl",
                        base_card.get("crop_set") or "awares9", base_card.get("lowres"))
    no_crop = {"labels": _label_no_crop_share(cfg.work / "trajectories" / "stats.json"),
               "sft": cells[("sft", "awares")].no_crop_share, "grpo": cells[("grpo", "awares")].no_crop_share}
    targets = check_targets(cells)
    stage_time = dict(timings)
    total_min = sum(stage_time.values()) / 60
    base_model = base_model_summary(base_card)
    machine = {"cpus": _cpus(), "platform": platform.platform()}
    config = {**json.loads(cfg.model_dump_json()), "base": _shown(cfg.base)}
    config["sft_config"], config["grpo_config"] = _shown(cfg.sft_config), _shown(cfg.grpo_config)
    results = {"config": config, "summaries": [s.model_dump() for s in summaries],
               "oracle_rtr": oracle, "no_crop_share": no_crop, "paper_no_crop_share": PAPER_NO_CROP,
               "targets": targets, "stage_seconds": stage_time, "total_minutes": round(total_min, 1),
               "base_model": base_model, "machine": machine}
    docs = Path(cfg.docs)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    plot_accuracy_vs_rtr([s for s in summaries if s.benchmark == "overall"], docs / "accuracy_vs_rtr.png",
                         title=f"tiny AwaRes reproduction (oracle RTR {oracle:.3f})")
    (docs / "results.md").write_text(_markdown(cfg, summaries, oracle, no_crop, targets, stage_time, total_min,
                                               base_model, machine))
    return results


def _shown(path: Path) -> str:
    """``path`` relative to the working directory where it lies inside it (no machine paths in docs)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def _markdown(cfg: Any, summaries: list[ModeSummary], oracle: float, no_crop: dict[str, float | None],
              targets: dict[str, Any], stage_time: dict[str, float], total_min: float,
              base_model: dict[str, Any], machine: dict[str, Any]) -> str:
    overall = [s for s in summaries if s.benchmark == "overall"]
    split = [s for s in summaries if s.benchmark != "overall"]
    lines = [
        "# Tiny AwaRes reproduction: results",
        "",
        f"Written by `awares-train reproduce` (`make reproduce`) from `{_shown(cfg.base)}`: {cfg.n_train} synthetic training "
        f"records, {cfg.n_test} test questions (code font {cfg.test_font}; `needs-crop` = read the code, "
        "`low-res-ok` = colour / shape / count). Accuracy is exact match.",
        "",
        "![accuracy vs RTR](accuracy_vs_rtr.png)",
        "",
        "## Overall",
        "",
        summaries_markdown(overall),
        "",
        f"Oracle RTR (every question given exactly its target crops): **{oracle:.3f}**.",
        "",
        "## Share of no-crop decisions",
        "",
        "| | labels (SFT data) | after SFT | after GRPO |",
        "|---|---:|---:|---:|",
        f"| this run | {_pct(no_crop['labels'])} | {_pct(no_crop['sft'])} | {_pct(no_crop['grpo'])} |",
        f"| paper | {_pct(PAPER_NO_CROP['labels'])} | {_pct(PAPER_NO_CROP['sft'])} | {_pct(PAPER_NO_CROP['grpo'])} |",
        "",
        "## Targets",
        "",
        "| target | holds | numbers |",
        "|---|---|---|",
    ]
    for name, t in targets.items():
        nums = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in t.items() if k != "holds")
        lines.append(f"| {name} | {'yes' if t['holds'] else '**no**'} | {nums} |")
    lines += ["", "## Per question type", "", summaries_markdown(split)]
    asked = [s for s in overall if s.region_confusion]
    if asked:
        lines += ["", "## Regions requested for the questions that need a crop", "",
                  "Rows: the target region; columns: what the model asked for (`none`: answered without a crop).",
                  ""]
        for s in asked:
            lines += [f"**{s.label}**", "", region_confusion_markdown(s), ""]
    lines += ["", "## Wall time per stage", "",
              "| stage | minutes |", "|---|---:|"]
    lines += [f"| {k} | {v / 60:.1f} |" for k, v in stage_time.items()]
    lines += [f"| **total** | **{total_min:.1f}** |", "",
              f"Machine: {machine['cpus']} CPU cores, {machine['platform']}. Each time is that of the run that "
              "completed the stage (a resumed run keeps the earlier times).",
              ""]
    return "\n".join(lines + _base_model_markdown(cfg, base_model, total_min))


def base_minutes_line(base: Path, minutes: dict[str, float], stages_min: float, stages: str,
                      gpu_minutes: float = 0.0) -> str:
    """The report's sentence on the base's own training time and the whole recipe's (``stages``: whose time
    ``stages_min`` is). Only what the base's card records is counted (a lower bound where a phase went
    unrecorded); minutes a phase spent on a GPU are named, a CPU would take several times as long."""
    base_min = sum(minutes.values())
    parts = ", ".join(f"{k}: {v:.1f}" for k, v in minutes.items())
    on_gpu = f", {gpu_minutes:.1f} of them on a GPU" if gpu_minutes else ""
    return (f"`{_shown(base)}` records **{base_min:.1f} min** of training from random weights in its `awares.json` "
            f"(stages {parts}{on_gpu}; only the phases its card records are counted). With {stages}, the whole "
            f"recipe from scratch: at least **{base_min + stages_min:.1f} min**.")


def _base_model_markdown(cfg: Any, base_model: dict[str, Any], total_min: float) -> list[str]:
    """The base model's own record: how long it trained from random weights and what it reads where."""
    minutes, heldout = base_model["training_minutes"], base_model["heldout"]
    if not minutes and not heldout:
        return []
    lines = ["## Base model", ""]
    if minutes:
        lines += [base_minutes_line(cfg.base, minutes, total_min, "the AwaRes stages above",
                                    base_model.get("gpu_minutes", 0.0)), ""]
    if heldout:
        lines += ["Its held-out accuracy (exact match, teacher-forced, from its `awares.json`):", "",
                  "| " + " | ".join(heldout) + " |", "|" + "---:|" * len(heldout),
                  "| " + " | ".join(f"{v:.2f}" for v in heldout.values()) + " |", ""]
    return lines
