"""Run cold-start SFT: trajectories in, a LoRA adapter (or full model) plus model card out.

``run_sft(cfg)`` is what ``awares-train sft --config FILE`` calls; it also works under ``torchrun`` /
``accelerate launch`` (one process per device; only rank 0 writes the run files).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from awares_train.sft.config import AwaresSFTConfig

__all__ = ["run_sft", "resolve_request_format", "prepare_template", "build_collator", "split_datasets"]

log = logging.getLogger(__name__)


def resolve_request_format(requested: str, processor: Any) -> str:
    """``auto`` -> ``tool`` when the chat template can render tool calls, else ``text``; ``tool`` is checked.

    Raises:
        ValueError: ``tool`` with a template that drops tool calls (the request turn would train as an empty turn).
    """
    from awares_tool.backends.templates import template_support

    supported = template_support(processor).tool_calls
    if requested == "tool" and not supported:
        raise ValueError(
            "request_format: tool, but this model's chat template renders no tool calls (the request turn would be "
            "trained as an empty turn) and the package ships no tool-capable template for its family; use "
            "request_format: text (the paper's GET_CROPS: [...] form) or request_format: auto")
    if requested != "auto":
        return requested
    chosen = "tool" if supported else "text"
    log.info("request_format auto -> %s (%s)", chosen, "the chat template renders tool calls" if supported else
             "the chat template renders no tool calls: the text protocol GET_CROPS: [...]")
    return chosen


def prepare_template(cfg: AwaresSFTConfig, processor: Any, model_type: str | None) -> str | None:
    """For the tool request format, give a checkpoint whose template renders no tool calls the package's
    tool-capable one (Qwen2/2.5-VL-Instruct); returns its name for the model card, or None (own template kept)."""
    if cfg.request_format not in ("auto", "tool"):
        return None
    from awares_tool.backends.templates import ensure_tool_template

    return ensure_tool_template(processor, model_type)


def _system_prompt(cfg: Any, request_format: str) -> str | None:
    """The system prompt to train with: the config's, the tool-style one for ``tool``, else the data's."""
    if cfg.system_prompt is not None:
        return cfg.system_prompt
    if request_format == "tool":
        from awares_tool.crops import get_crop_set
        from awares_tool.protocol import build_system_prompt

        return build_system_prompt(get_crop_set(cfg.crop_set), style="tool")
    return None


def build_collator(cfg: AwaresSFTConfig, processor: Any) -> Any:
    """The :class:`~awares_train.sft.collator.TrajectoryCollator` for this config and processor."""
    from awares_train.grpo.env import crop_tool_schemas
    from awares_train.sft.collator import TrajectoryCollator

    fmt = resolve_request_format(cfg.request_format, processor)
    return TrajectoryCollator(
        processor, request_format=fmt, tools=crop_tool_schemas(cfg.crop_set) if fmt == "tool" else None,
        system_prompt=_system_prompt(cfg, fmt), tool_turn_weight=cfg.tool_turn_weight, crop_set=cfg.crop_set,
        region_token_weight=cfg.region_token_weight,
    )


def split_datasets(cfg: AwaresSFTConfig) -> tuple[Any, Any]:
    """Train and held-out datasets: ``eval_data`` if given, else ``eval_fraction`` of ``train_data``."""
    from awares_train.sft.data import load_trajectory_dataset

    train = load_trajectory_dataset(cfg.train_data, limit=cfg.max_train_samples)
    if cfg.eval_data:
        return train, load_trajectory_dataset(cfg.eval_data)
    if cfg.eval_fraction > 0 and len(train) >= 4:
        parts = train.train_test_split(test_size=cfg.eval_fraction, seed=cfg.seed)
        return parts["train"], parts["test"]
    return train, None


def _model_card(cfg: AwaresSFTConfig, model: Any, collator: Any, metrics: dict[str, Any]) -> Any:
    from awares_tool.backends.base import ModelCard
    from awares_train.sft.data import read_settings
    from awares_train.sft.runio import infer_family

    settings = read_settings(cfg.train_data)
    system = collator.system_prompt or settings.get("system_prompt")
    return ModelCard(
        family=infer_family(getattr(model.config, "model_type", None)),
        crop_set=cfg.crop_set,
        lowres=cfg.lowres if isinstance(cfg.lowres, dict) else settings.get("lowres"),
        system_prompt=system,
        crops_turn_text=settings.get("crops_turn_text"),  # the wording trained on (None: the protocol's)
        request_format=collator.request_format,
        metrics=metrics,
        training={"stage": "sft", "base_model": cfg.model_name_or_path, "data": cfg.train_data,
                  "use_peft": cfg.use_peft, "lora_r": cfg.lora_r if cfg.use_peft else None,
                  "tool_turn_weight": cfg.tool_turn_weight, "region_token_weight": cfg.region_token_weight,
                  "learning_rate": cfg.learning_rate,
                  "epochs": cfg.num_train_epochs, "max_steps": cfg.max_steps},
    )


def run_sft(cfg: AwaresSFTConfig) -> Path:
    """Train, evaluate on the held-out split, save the adapter/model, the config, metrics and model cards.

    Returns:
        ``cfg.output_dir``.
    """
    from awares_tool.backends.hf_processors import load_processor
    from awares_train.sft.model import apply_freezing, load_model, lora_config, merge_and_save, trainable_summary
    from awares_train.sft.runio import make_metrics_callback, save_resolved_config, write_model_card
    from awares_train.sft.trainer import WeightedSFTTrainer

    if not cfg.model_name_or_path or not cfg.train_data:
        raise ValueError("set model_name_or_path and train_data (in the YAML or with --set key=value)")
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    out = Path(cfg.output_dir)
    processor = load_processor(cfg.model_name_or_path)
    model = load_model(cfg.model_name_or_path)
    template = prepare_template(cfg, processor, getattr(model.config, "model_type", None))
    peft_config = None
    if cfg.use_peft:
        peft_config = lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target,
                                  cfg.lora_target_modules)
    else:
        apply_freezing(model, vision=cfg.freeze_vision, projector=cfg.freeze_projector, language=cfg.freeze_language)
    train_ds, eval_ds = split_datasets(cfg)
    collator = build_collator(cfg, processor)
    trainer = WeightedSFTTrainer(model=model, args=cfg, train_dataset=train_ds, eval_dataset=eval_ds,
                                 processing_class=processor, data_collator=collator, peft_config=peft_config,
                                 callbacks=[make_metrics_callback(out / "metrics.jsonl")])
    main = trainer.is_world_process_zero()
    if main:
        save_resolved_config(cfg, out)
    log.info("SFT: %d train / %d eval trajectories, format=%s, params %s", len(train_ds),
             len(eval_ds) if eval_ds is not None else 0, collator.request_format, trainable_summary(trainer.model))
    metrics: dict[str, Any] = {}
    if eval_ds is not None:
        metrics["eval_loss_before"] = trainer.evaluate()["eval_loss"]
    result = trainer.train(resume_from_checkpoint=cfg.resume_from_checkpoint)
    metrics["train_loss"] = result.training_loss
    if eval_ds is not None:
        metrics["eval_loss_after"] = trainer.evaluate()["eval_loss"]
    trainer.save_model(str(out))
    if main:
        processor.save_pretrained(out)
        card = _model_card(cfg, trainer.model, collator, metrics)
        card.chat_template = template  # inference applies the template training used
        card.training["world_size"] = trainer.accelerator.num_processes
        write_model_card(out, card, title=f"AwaRes SFT of {cfg.model_name_or_path}",
                         details={"base_model": cfg.model_name_or_path, "steps": trainer.state.global_step,
                                  **metrics})
        if cfg.use_peft and cfg.merge_and_save:
            merged = merge_and_save(trainer.model, processor, out / "merged")
            write_model_card(merged, card, title=f"AwaRes SFT of {cfg.model_name_or_path} (merged)",
                             details={"base_model": cfg.model_name_or_path, **metrics})
    log.info("SFT done: %s", metrics)
    return out
