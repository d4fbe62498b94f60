"""What every training run reads and writes: YAML configs with CLI overrides, metrics JSONL, model cards.

Shared by SFT and GRPO (GRPO imports it from here) so both stages leave the same files behind:
``config.yaml`` (the fully resolved config), ``metrics.jsonl`` (one line per logging step),
``README.md`` (a human model card) and ``awares.json`` (the :class:`~awares_tool.backends.base.ModelCard`
the inference loop reads to prompt the model the way it was trained).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["load_config", "parse_overrides", "save_resolved_config", "make_metrics_callback", "write_model_card",
           "infer_family"]

log = logging.getLogger(__name__)
C = TypeVar("C")

#: transformers ``model_type`` -> token-accounting family name of :mod:`awares_tool.tokens`.
_MODEL_TYPE_FAMILY = {
    "qwen2_vl": "qwen2-vl", "qwen2_5_vl": "qwen2.5-vl", "qwen3_vl": "qwen3-vl", "idefics3": "idefics3",
    "smolvlm": "smolvlm", "llava": "llava-1.5", "llava_next": "llava-next",
}


def infer_family(model_type: str | None) -> str | None:
    """The :mod:`awares_tool.tokens` family of a transformers ``model_type`` (``None`` if unknown)."""
    return _MODEL_TYPE_FAMILY.get(model_type or "")


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["learning_rate=1e-4", "lora_r=16"]`` -> ``{"learning_rate": 0.0001, "lora_r": 16}``.

    Values are read as YAML, so numbers, booleans, ``null`` and ``[a, b]`` lists get their types.

    >>> parse_overrides(["max_steps=3", "use_peft=false", "report_to=[none]"])
    {'max_steps': 3, 'use_peft': False, 'report_to': ['none']}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} must look like key=value, e.g. learning_rate=1e-4")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def load_config(cls: type[C], path: str | Path | None = None, overrides: Sequence[str] | dict[str, Any] = ()) -> C:
    """Build a config dataclass from a YAML file plus ``key=value`` overrides (overrides win).

    Args:
        cls: The config class (a TRL config subclass such as ``AwaresSFTConfig``).
        path: YAML file with a mapping of field names to values; ``None`` for defaults only.
        overrides: ``key=value`` strings (as the CLI's ``--set``) or a dict.

    Raises:
        ValueError: The file is not a mapping, or a key is not a field of ``cls`` (the message lists
            close field names).
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"cannot read config {str(path)!r}: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"config {str(path)!r} must be a YAML mapping of field: value, got {type(loaded).__name__}")
        data.update(loaded or {})
    data.update(overrides if isinstance(overrides, dict) else parse_overrides(overrides))
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        import difflib

        hints = {k: difflib.get_close_matches(k, names, n=2) for k in unknown}
        raise ValueError(f"unknown config keys for {cls.__name__}: {hints} (key -> close field names)")
    return cls(**data)


def save_resolved_config(cfg: Any, out_dir: str | Path) -> Path:
    """Write every field of ``cfg`` (defaults included) to ``out_dir/config.yaml``; returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    values = cfg.to_dict() if hasattr(cfg, "to_dict") else dataclasses.asdict(cfg)
    clean = json.loads(json.dumps(values, default=str))  # enums, paths -> plain YAML scalars
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(clean, sort_keys=True), encoding="utf-8")
    return path


def _trainer_callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


def make_metrics_callback(path: str | Path) -> Any:
    """A ``TrainerCallback`` that appends every log (loss, rewards, tool metrics...) to a JSONL file.

    Only the main process writes. Each line is ``{"step": int, "time": float, **logs}``.
    """
    base = _trainer_callback_base()
    target = Path(path)

    class _Jsonl(base):  # type: ignore[misc, valid-type]
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if not logs or not state.is_world_process_zero:
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            row = {"step": state.global_step, "time": time.time(), **logs}
            with target.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, default=float) + "\n")

    return _Jsonl()


def write_model_card(out_dir: str | Path, card: Any, *, title: str, details: dict[str, Any]) -> Path:
    """Write ``awares.json`` (``card``: a :class:`~awares_tool.backends.base.ModelCard`) and a ``README.md``.

    Args:
        out_dir: The model folder.
        card: The model card; its ``training`` field should already hold the run summary.
        title: First heading of the README.
        details: Extra key/value lines for the README (base model, data, steps, final metrics...).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "awares.json").write_text(card.model_dump_json(indent=2), encoding="utf-8")
    lines = [
        f"# {title}", "",
        "Trained with `awares-train` to look at a low-resolution view first and fetch high-resolution crops "
        "only where the question needs them (AwaRes). Run it with the settings in `awares.json` "
        "(system prompt, crop set, low-res policy, request format): the inference loop reads them.", "",
        "| setting | value |", "|---|---|",
    ]
    for key, value in {"family": card.family, "crop_set": card.crop_set, "request_format": card.request_format,
                       "lowres": card.lowres, **details}.items():
        lines.append(f"| {key} | `{json.dumps(value, default=str)}` |")
    lines += ["", "## System prompt", "", "```", card.system_prompt or "(model default)", "```", ""]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
    return out / "awares.json"
