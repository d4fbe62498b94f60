"""Run multi-turn GRPO with the crop tool: ``run_grpo(cfg)`` (``awares-train grpo --config FILE``).

The rollout is TRL's own tool loop (ml-stack.md §3): the policy sees the system prompt, the low-res view
and the question; it may call ``get_crops`` (the :class:`~awares_train.grpo.env.CropEnv` of that rollout
cuts the regions from the ORIGINAL image and returns them as images), sees the crops in the next turn and
answers. Crop decision and answer are one completion, scored by the terms of :mod:`.rewards`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from trl import GRPOTrainer

from awares_train.grpo.config import AwaresGRPOConfig

__all__ = ["AwaresGRPOTrainer", "run_grpo", "build_grpo_dataset", "token_counter", "placeholder_token_ids",
           "suppress_placeholder_tokens"]

log = logging.getLogger(__name__)


class AwaresGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` that records what each generated batch fed the model (images per sample, crops).

    ``last_batch`` holds ``num_images``, ``pixel_rows``, ``crops`` (per rollout) and ``completion_ids`` of the
    latest batch, so tests and debugging can check that crop images really reach the training forward pass.
    """

    last_batch: dict[str, Any] = {}

    def _tokenize_prompts(self, prompts: Any) -> Any:
        """Image fields as tensors: with per-rollout environments TRL concatenates only tensor fields, and
        the image-only (PIL) processors return numpy arrays, which TRL 1.16 then keeps as lists of rows; its
        tool loop crashes on those when no tool call of a batch returned an image (every call failed)."""
        import numpy as np
        import torch

        prompt_ids, images, fields = super()._tokenize_prompts(prompts)
        for k, v in fields.items():
            if isinstance(v, list) and v and isinstance(v[0], np.ndarray):
                fields[k] = torch.from_numpy(np.stack(v))
        return prompt_ids, images, fields

    def _tool_call_loop(self, prompts: Any, prompt_ids: Any, completion_ids: Any, completions: Any, *args: Any) -> Any:
        """TRL's tool loop, then the environments are told which crops it rolled back (over the completion budget),
        so the rewards and metrics count only crops the policy saw; ``awares/rolled_back_crops`` logs them."""
        out = super()._tool_call_loop(prompts, prompt_ids, completion_ids, completions, *args)
        final = out[1]
        withdrawn = [env._reconcile(comp) if hasattr(env, "_reconcile") else 0
                     for env, comp in zip(self.environments or [], final)]
        if withdrawn:
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["awares/rolled_back_crops"].append(sum(withdrawn) / len(withdrawn))
            if any(withdrawn):
                log.warning("%d crop(s) of %d rollouts did not fit max_completion_length=%s and were rolled back",
                            sum(withdrawn), len(withdrawn), self.max_completion_length)
        return out

    def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        pixel = output.get("pixel_values")
        self.last_batch = {
            "num_images": list(output.get("num_images") or []),
            "pixel_rows": int(pixel.shape[0]) if pixel is not None else 0,
            "crops": [len(env.regions) for env in (self.environments or [])],
            "completion_ids": output.get("completion_ids"),
        }
        if self.last_batch["num_images"]:
            n = self.last_batch["num_images"]
            self._metrics["train"]["awares/images_per_sample"].append(sum(n) / len(n))
        return output


def token_counter(processor: Any, model_type: str | None, family: str | None = None) -> Any:
    """``(w, h) -> visual tokens`` for RTR from ``awares_tool.tokens``, or ``None`` (pixel ratio) if unknown."""
    from awares_tool.tokens import get_family
    from awares_train.sft.runio import infer_family

    name = family or infer_family(model_type)
    if name is None:
        return None
    overrides: dict[str, Any] = {}
    size = getattr(getattr(processor, "image_processor", None), "size", None)
    if name.startswith("qwen") and size is not None:
        get = size.get if hasattr(size, "get") else lambda k: getattr(size, k, None)
        if get("shortest_edge") and get("longest_edge"):
            overrides = {"min_pixels": int(get("shortest_edge")), "max_pixels": int(get("longest_edge"))}
        patch = getattr(processor.image_processor, "patch_size", None)
        if patch:
            overrides["patch"] = int(patch)
    try:
        fam = get_family(name, **overrides)
    except (TypeError, ValueError) as e:
        log.warning("no token counter for %s (%s); RTR falls back to the pixel ratio", name, e)
        return None
    return fam.count


#: Model config fields naming tokens that only the processor writes (they stand for image, video or audio features).
PLACEHOLDER_TOKEN_FIELDS = ("image_token_id", "image_token_index", "video_token_id", "video_token_index",
                            "vision_start_token_id", "vision_end_token_id", "audio_token_id")


def placeholder_token_ids(config: Any) -> list[int]:
    """The ids of the multimodal placeholder tokens named by ``config`` (and its ``text_config``)."""
    ids = {getattr(c, f, None) for c in (config, getattr(config, "text_config", None)) if c is not None
           for f in PLACEHOLDER_TOKEN_FIELDS}
    return sorted(i for i in ids if isinstance(i, int) and i >= 0)


def suppress_placeholder_tokens(cfg: AwaresGRPOConfig, model_config: Any) -> list[int]:
    """Keep rollouts from sampling placeholder tokens (merged into ``cfg.generation_kwargs["suppress_tokens"]``).

    A sampled ``<|video_pad|>`` or ``<|vision_start|>`` in a completion reaches the loss forward pass as a
    placeholder with no pixels behind it, and Qwen-VL's position ids then fail mid-run ("'NoneType' object is
    not an iterator", seen with a weak policy at step 14 of a 300-step run). TRL suppresses only the image token,
    and a user's own ``suppress_tokens`` would replace even that, so the union is set here (transformers
    generation; with ``use_vllm`` nothing is set, as vLLM's sampling parameters have no such field).
    """
    ids = placeholder_token_ids(model_config)
    if not ids:
        return []
    if getattr(cfg, "use_vllm", False):  # vLLM's SamplingParams take no suppress_tokens
        log.warning("use_vllm: placeholder tokens %s are not suppressed in the rollouts", ids)
        return []
    kwargs = cfg.generation_kwargs or {}
    kwargs = json.loads(kwargs) if isinstance(kwargs, str) else dict(kwargs)
    kwargs["suppress_tokens"] = sorted(set(kwargs.get("suppress_tokens") or []) | set(ids))
    cfg.generation_kwargs = kwargs
    return ids


def _card_of(*folders: str | None) -> dict[str, Any]:
    for folder in folders:
        if folder and (Path(folder) / "awares.json").exists():
            return json.loads((Path(folder) / "awares.json").read_text(encoding="utf-8"))
    return {}


def build_grpo_dataset(cfg: AwaresGRPOConfig, system_prompt: str) -> Any:
    """Prompt rows for GRPO: ``prompt`` (system + question), ``images`` (low-res view) and the reward columns."""
    from datasets import Image, Sequence

    from awares_train.sft.data import read_records
    from datasets import Dataset

    rows = []
    for rec in read_records(cfg.train_data, limit=cfg.max_train_samples):
        rows.append({
            "prompt": [{"role": "system", "content": system_prompt}, {"role": "user", "content": rec["question"]}],
            "images": rec["images"][:1],  # the low-res view; crops come from the tool at run time
            "source_image": rec["source_image"], "answers": rec["answers"], "label": rec["label"],
            "question": rec["question"], "target_regions": rec["target_regions"], "image_size": rec["image_size"],
        })
    if not rows:
        raise ValueError(f"{cfg.train_data}: no records for GRPO")
    return Dataset.from_list(rows).cast_column("images", Sequence(Image()))


def _image_size(path: str) -> tuple[int, int]:
    from awares_tool.images import open_image

    return open_image(path).size  # header only


def _tool_template(processor: Any, model_type: str | None, card_in: dict[str, Any]) -> str | None:
    """The template the rollouts use: the SFT card's, else the package's for a checkpoint without tool calls.

    Raises:
        ValueError: The template renders no tool calls and the family has no tool-capable one (GRPO's tool loop
            needs it).
    """
    from awares_tool.backends.templates import apply_named_template, ensure_tool_template, template_support

    if card_in.get("chat_template"):
        apply_named_template(processor, card_in["chat_template"])
        return card_in["chat_template"]
    applied = ensure_tool_template(processor, model_type)
    if not template_support(processor).tool_calls:
        raise ValueError(f"GRPO rolls out get_crops tool calls, but the {model_type} chat template renders none and "
                         "the package ships no tool-capable template for this family; add one to "
                         "awares_tool/backends/templates.py TOOL_TEMPLATES (a template TRL recognises)")
    return applied


def run_grpo(cfg: AwaresGRPOConfig) -> Path:
    """Train, save the policy (adapter or model), config, metrics, tool-call-rate plot and model cards."""
    from awares_tool.backends.base import ModelCard
    from awares_tool.backends.hf_processors import load_processor
    from awares_tool.crops import get_crop_set
    from awares_tool.protocol import build_system_prompt
    from awares_tool.protocol import crops_turn_text
    from awares_train.grpo.budget import check_completion_budget
    from awares_train.grpo.env import crop_tool_schemas, make_env_factory
    from awares_train.grpo.monitor import CollapseMonitor, make_collapse_callback, plot_tool_call_rate
    from awares_train.grpo.rewards import build_reward_funcs
    from awares_train.sft.model import load_model, lora_config
    from awares_train.sft.runio import infer_family, make_metrics_callback, save_resolved_config, write_model_card

    if not cfg.model_name_or_path or not cfg.train_data:
        raise ValueError("set model_name_or_path and train_data (in the YAML or with --set key=value)")
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    out = Path(cfg.output_dir)
    card_in = _card_of(cfg.sft_adapter, cfg.model_name_or_path)
    proc_dir = cfg.sft_adapter if cfg.sft_adapter and (Path(cfg.sft_adapter) / "processor_config.json").exists() \
        else cfg.model_name_or_path
    processor = load_processor(proc_dir)
    model = load_model(cfg.model_name_or_path, adapter=cfg.sft_adapter, merge_adapter=cfg.merge_sft_adapter)
    is_peft = hasattr(model, "peft_config")
    peft_config = None
    if cfg.use_peft and not is_peft:
        peft_config = lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target)
    system = cfg.system_prompt or (card_in.get("system_prompt") if card_in.get("request_format") == "tool" else None)
    system = system or build_system_prompt(get_crop_set(cfg.crop_set), style="tool")
    dataset = build_grpo_dataset(cfg, system)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    template = _tool_template(processor, model_type, card_in)
    crops_template = card_in.get("crops_turn_text")  # the wording the SFT stage trained on
    if cfg.completion_budget != "off":
        sizes = [tuple(s) if s else _image_size(p) for s, p in zip(dataset["image_size"], dataset["source_image"])]
        check_completion_budget(cfg, processor, sizes, tools=crop_tool_schemas(cfg.crop_set),
                                crops_text=crops_turn_text(["0"], get_crop_set(cfg.crop_set), crops_template))
    factory = make_env_factory(cfg.crop_set, cfg.max_crops, token_counter(processor, model_type, cfg.token_family),
                               crops_template=crops_template, crop_max_pixels=cfg.crop_max_pixels)
    suppress_placeholder_tokens(cfg, model.config)
    funcs, weights = build_reward_funcs(cfg)
    cfg.reward_weights = weights
    monitor = CollapseMonitor(cfg.collapse_low, cfg.collapse_high, cfg.collapse_patience)
    trainer = AwaresGRPOTrainer(
        model=model, reward_funcs=funcs, args=cfg, train_dataset=dataset, processing_class=processor,
        peft_config=peft_config, environment_factory=factory,
        callbacks=[make_collapse_callback(monitor), make_metrics_callback(out / "metrics.jsonl")],
    )
    main = trainer.is_world_process_zero()
    if main:
        save_resolved_config(cfg, out)
    trainer.train(resume_from_checkpoint=cfg.resume_from_checkpoint)
    trainer.save_model(str(out))
    if main:
        processor.save_pretrained(out)
        if (out / "metrics.jsonl").exists():
            plot_tool_call_rate(out / "metrics.jsonl", out / "tool_call_rate.png", low=cfg.collapse_low,
                                high=cfg.collapse_high)
        card = ModelCard(
            family=infer_family(model_type), crop_set=cfg.crop_set, lowres=card_in.get("lowres"), system_prompt=system,
            crops_turn_text=crops_template, request_format="tool", chat_template=template,
            metrics={"collapsed": monitor.collapsed, "tool_call_rate": monitor.history[-1] if monitor.history else None},
            training={"stage": "grpo", "start": cfg.model_name_or_path, "sft_adapter": cfg.sft_adapter,
                      "max_completion_length": cfg.max_completion_length, "crop_max_pixels": cfg.crop_max_pixels,
                      "data": cfg.train_data, "steps": trainer.state.global_step, "rewards": cfg.reward_summary(),
                      "num_generations": cfg.num_generations, "beta": cfg.beta, "learning_rate": cfg.learning_rate},
        )
        write_model_card(out, card, title=f"AwaRes GRPO of {cfg.model_name_or_path}",
                         details={"steps": trainer.state.global_step, **cfg.reward_summary()})
    return out
