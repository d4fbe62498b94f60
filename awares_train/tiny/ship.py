"""Make a model of a reproduction run the embedded default: ``python -m awares_train.tiny.ship WORK --run grpo``.

The embedded ``tiny-awares`` is a GRPO model shipped by this script (``WORK``: a synthetic reproduction, or the
default's recipe :mod:`awares_train.tiny.train_default`): it copies the inference files of ``WORK/<run>`` (no
optimizer state, configs or logs), writes a model card that states the low-res policy explicitly and carries
what the evaluation harness measured on the run's one-code test split (``metrics.reproduce_eval``, the figures
the package's tests check) and, where ``WORK/eval/<run>-bench`` exists, on the benchmark's test split
(``metrics.bench_eval``), then exports the GGUF pair for the llama.cpp backend.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

__all__ = ["INFERENCE_FILES", "shipped_card", "ship_model", "bench_eval_dir"]

#: What inference needs from a trained folder; the rest (training_args.bin, metrics.jsonl, ...) stays behind.
INFERENCE_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                   "tokenizer_config.json", "chat_template.jinja", "processor_config.json")
#: Per-benchmark figures of the evaluation report kept in the card.
EVAL_FIELDS = ("n", "accuracy", "mean_rtr", "crops_per_sample", "no_crop_share", "decision_accuracy",
               "region_accuracy")


def bench_eval_dir(work: Path, run: str) -> Path:
    """Where a run's evaluation on the benchmark's test split lies (``train_default`` writes it there)."""
    return work / "eval" / f"{run}-bench"


def _by_benchmark(report: dict[str, Any]) -> dict[str, Any]:
    return {s["benchmark"]: {k: s[k] for k in EVAL_FIELDS} for s in report["summaries"] if s["mode"] == "awares"}


def shipped_card(card: dict[str, Any], report: dict[str, Any], settings: dict[str, Any], run: str,
                 image_size: list[int], bench_report: dict[str, Any] | None = None,
                 max_pixels: int | None = None) -> dict[str, Any]:
    """The trained run's card with an explicit low-res policy and pixel cap (``max_pixels``: the processor's;
    the llama.cpp backend applies it, libmtmd does not), the test figures and where it came from."""
    from awares_tool.images.lowres import parse_lowres

    card = dict(card)
    card["lowres"] = parse_lowres(card.get("lowres")).model_dump()
    card["image_size"] = image_size
    card["max_pixels"] = card.get("max_pixels") or max_pixels
    card["font_size"] = settings["test_font"]
    card["metrics"] = {"reproduce_eval": {"split": "test", "mode": "awares", "font_size": settings["test_font"],
                                          "by_benchmark": _by_benchmark(report)}}
    if bench_report is not None:
        card["metrics"]["bench_eval"] = {"split": "test", "mode": "awares", "data": bench_report.get("data"),
                                         "by_benchmark": _by_benchmark(bench_report)}
    card["training"] = {**card.get("training", {}), "run": run, "reproduce_base": settings["base"],
                        "reproduce_work": settings["work"], "n_train": settings["n_train"],
                        "train_fonts": settings["train_fonts"]}
    return card


def _processor_max_pixels(folder: Path) -> int | None:
    """The ``max_pixels`` (``size.longest_edge``) of a Qwen-VL processor config (None where absent)."""
    path = folder / "processor_config.json"
    if not path.is_file():
        return None
    size = json.loads(path.read_text()).get("image_processor", {}).get("size", {})
    return size.get("longest_edge") or size.get("max_pixels")


def ship_model(work: Path, out: Path, *, run: str = "grpo", gguf: Path | None = None,
               quant: str = "f16") -> dict[str, Any]:
    """Copy ``work/<run>`` to ``out`` with its shipped card (and export the GGUF into ``gguf``); returns the card."""
    src = work / run
    missing = [f for f in (*INFERENCE_FILES, "awares.json") if not (src / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{src} lacks {', '.join(missing)}: is the reproduction's {run!r} stage finished?")
    report_path = work / "eval" / run / "report.json"
    if not report_path.is_file():
        raise FileNotFoundError(f"no evaluation report at {report_path}: run the reproduction's eval stage first")
    settings = json.loads((work / "reproduce.json").read_text())
    from awares_train.data.synthetic import SyntheticConfig
    from awares_train.tiny.export import replace_folder

    data = SyntheticConfig(font_size=settings["test_font"], seed=settings["seed"])
    bench_path = bench_eval_dir(work, run) / "report.json"
    card = shipped_card(json.loads((src / "awares.json").read_text()), json.loads(report_path.read_text()),
                        settings, run, [data.width, data.height],
                        json.loads(bench_path.read_text()) if bench_path.is_file() else None,
                        _processor_max_pixels(src))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in INFERENCE_FILES:
        shutil.copyfile(src / name, tmp / name)
    (tmp / "awares.json").write_text(json.dumps(card, indent=2) + "\n")
    replace_folder(tmp, out)
    if gguf is not None:
        from awares_tool.gguf import export_gguf

        export_gguf(out, gguf, quant=quant)  # type: ignore[arg-type]
    return card


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path, help="Work folder of `awares-train reproduce` (e.g. runs/scratch/reproduce).")
    ap.add_argument("--run", default="grpo", help="Model of that run to ship (default: grpo).")
    ap.add_argument("--out", type=Path, default=Path("awares_tool/models/tiny-awares"))
    ap.add_argument("--gguf", type=Path, default=Path("awares_tool/models/tiny-awares-gguf"),
                    help="Folder for model.gguf + mmproj.gguf ('' to skip the export).")
    ap.add_argument("--quant", default="f16", help="GGUF weights: f16 (exact, the shipped one), q8_0 or q4_k_m.")
    args = ap.parse_args(argv)
    card = ship_model(args.work, args.out, run=args.run, gguf=args.gguf if str(args.gguf) else None,
                      quant=args.quant)
    overall = card["metrics"]["reproduce_eval"]["by_benchmark"]["overall"]
    print(f"shipped {args.work / args.run} -> {args.out}: accuracy {overall['accuracy']:.3f} "
          f"at RTR {overall['mean_rtr']:.3f} on {overall['n']} test questions")


if __name__ == "__main__":
    main()
