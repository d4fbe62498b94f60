"""What every training run reads and writes: YAML configs with CLI overrides, metrics JSONL, model cards.

Shared by SFT and GRPO (GRPO imports it from here) so both stages leave the same files behind:
``config.yaml`` (the fully resolved config), ``metrics.jsonl`` (the trainer's log history, one line per log),
``README.md`` (a human model card) and ``awares.json`` (the :class:`~awares_tool.backends.base.ModelCard`
the inference loop reads to prompt the model the way it was trained).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["load_config", "save_resolved_config", "make_metrics_callback", "write_model_card",
           "infer_family", "release_distributed"]

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


def load_config(cls: type[C], path: str | Path | None = None, overrides: Sequence[str] | dict[str, Any] = ()) -> C:
    """Build a config dataclass from a YAML file plus overrides (overrides win), with TRL's parser.

    ``trl.TrlParser`` reads the YAML (``--config``, including its ``env:`` block) and types every value by
    its dataclass field the way ``HfArgumentParser`` does: ``save_strategy=no`` is the string ``"no"``,
    ``use_peft=false`` a bool, ``max_crops=null`` is ``None`` for a non-string optional field, and a list
    field takes space-separated items (``reward_weights=1 0.5``).

    Args:
        cls: The config class (a TRL config subclass such as ``AwaresSFTConfig``).
        path: YAML file with a mapping of field names to values; ``None`` for defaults only.
        overrides: ``key=value`` strings (as the CLI's ``--set``, parsed as ``--key=value``) or a dict of
            values, applied like values of the YAML file.

    Raises:
        ValueError: The file cannot be read or is not a mapping, a key is not a field of ``cls`` (the
            message lists close field names), or a value does not parse as its field's type.
    """
    from trl import TrlParser

    typed = dict(overrides) if isinstance(overrides, dict) else {}
    pairs = [] if isinstance(overrides, dict) else [_split_override(item) for item in overrides]
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    _check_keys(cls, names, [*typed, *(key for key, _ in pairs)])

    class _Parser(TrlParser):
        def error(self, message: str) -> None:  # type: ignore[override]  # argparse would print and exit
            raise ValueError(f"{cls.__name__}: {message}")

        def set_defaults_with_config(self, **config: Any) -> list[str]:
            # a dict of overrides is applied like the file's values, after them
            return super().set_defaults_with_config(**{**config, **typed})

    parser = _Parser(cls)
    argv = ["--config", str(path)] if path is not None else []
    if path is None:
        parser.set_defaults_with_config()  # the dict of overrides, with no file to carry it
    for key, value in pairs:
        if parser._option_string_actions[f"--{key}"].nargs == "+":  # a list field
            argv += [f"--{key}", *value.split()]
        else:
            argv.append(f"--{key}={value}")  # "=" keeps a value that starts with "-" a value
    try:
        cfg, from_file, _ = parser.parse_args_and_config(argv, return_remaining_strings=True,
                                                         separate_remaining_strings=True)
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read config {str(path)!r}: {e}") from e
    _check_keys(cls, names, [arg[2:] for arg in from_file[::2]])  # TrlParser returns ["--key", "value", ...]
    return cfg


def _split_override(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {item!r} must look like key=value, e.g. learning_rate=1e-4")
    return key.strip(), value


def _check_keys(cls: type, names: set[str], keys: Sequence[str] | dict[str, Any]) -> None:
    unknown = sorted(set(keys) - names)
    if unknown:
        import difflib

        hints = {k: difflib.get_close_matches(k, names, n=2) for k in unknown}
        raise ValueError(f"unknown config keys for {cls.__name__}: {hints} (key -> close field names)")


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
    """A ``TrainerCallback`` that keeps a JSONL file equal to the trainer's ``state.log_history``.

    One line per log (loss, rewards, tool metrics...), each with its ``"step"``, as the Trainer records
    them. The file is rewritten (atomically) at every log, so a run that crashes keeps its metrics. Logs
    made before ``train()`` (the held-out loss of the starting model) sit in a state that ``train()``
    replaces; they stay in front. Only the main process writes.
    """
    base = _trainer_callback_base()
    target = Path(path)

    class _LogHistory(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self.state: Any = None
            self.earlier: list[dict[str, Any]] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.state is not None and self.state is not state:
                self.earlier += self.state.log_history
            self.state = state

        def on_log(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.state = state
            if not state.is_world_process_zero:
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            rows = [*self.earlier, *state.log_history]
            tmp.write_text("".join(json.dumps(row, default=float) + "\n" for row in rows), encoding="utf-8")
            os.replace(tmp, target)

    return _LogHistory()


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


def release_distributed() -> None:
    """Destroy the process group a launcher (torchrun, accelerate) made, once training is over.

    Left for interpreter exit, gloo's threads are torn down in no set order and a rank sometimes aborts
    ("terminate called without an active exception", SIGABRT) after a run that succeeded; the launcher then
    reports the whole job failed (seen in one of three two-process SFT runs).
    """
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()  # no barrier: a rank that failed must not wait for the others
