"""Tiny randomly initialised VLMs of several families, built offline in seconds, for tests.

Why: the backends, the loop and the trainers must run through the real transformers loading path
(``save_pretrained`` -> ``AutoModelForImageTextToText.from_pretrained`` + ``AutoProcessor``), but no
checkpoint can be downloaded here. Each builder makes a model of about 0.2M parameters, a byte-level
BPE tokenizer trained in-process on :data:`CORPUS` plus the family's special tokens, the family's
image processor and a chat template, and saves them into one folder.

Two kinds, and tests must say which they mean:

* **fitted** (:func:`tiny_vlm_path`, the default of :func:`build_tiny_vlm`): every Qwen family carries TRL's
  tool-capable ``qwen3_vl.jinja`` and small pixel limits. Convenient, but it proves only that the package fits
  its own fixture: the real Qwen2-VL / Qwen2.5-VL-Instruct templates render no tool calls at all.
* **checkpoint** (:func:`checkpoint_vlm_path`, ``build_tiny_vlm(..., checkpoint=True)``): the chat template, special
  tokens and processor pixel settings exactly as the real checkpoints ship them (:data:`CHECKPOINT_SETTINGS`), so
  what breaks for a user with the real model breaks here too.

Choices of the fitted kind that tests rely on:

* Qwen families use TRL's ``qwen3_vl.jinja`` byte for byte (TRL recognises templates only by exact
  string equality: tool-call parsing, ``{% generation %}`` training variant). Idefics3 uses TRL's
  ``idefics3.jinja``; LLaVA a small template with system/user/assistant turns and images in any user turn.
* Qwen image processors get ``min_pixels = 56*56`` (``64*64`` for Qwen3-VL) and
  ``max_pixels = 28*28*1024`` (``32*32*1024``) so test images of 64-448 px are never downscaled.
* Without a usable torchvision (transformers 5.24 + torch 2.13 CPU here) Qwen processors are the
  image-only subclasses of :mod:`awares_tool.backends.hf_processors`; load them back with
  :func:`awares_tool.backends.hf_processors.load_processor`.

torch/transformers/tokenizers are imported inside the functions so this module imports without them.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["FAMILIES", "CHECKPOINT_FAMILIES", "CHECKPOINT_SETTINGS", "CORPUS", "build_tiny_vlm", "tiny_vlm_path",
           "checkpoint_vlm_path", "qwen_pixels", "token_family_overrides"]

log = logging.getLogger(__name__)

#: Families :func:`build_tiny_vlm` can build (token-accounting names of :mod:`awares_tool.tokens`).
FAMILIES: tuple[str, ...] = ("qwen2.5-vl", "qwen2-vl", "qwen3-vl", "idefics3", "llava")

#: What the tokenizer is trained on: enough English, digits and protocol text that prompts tokenize
#: into short words rather than single bytes.
CORPUS: tuple[str, ...] = (
    "What is written on the sign? The answer is 42.",
    "Look at the low-resolution view first. Request crops only where the question needs them.",
    "GET_CROPS: ['0', '5'] GET_CROPS: [\"3\"] get_crops regions top-left top-right bottom-left bottom-right",
    "center top half bottom half left half right half all full image crop high resolution",
    "Here are the crops you requested. Now answer the question.",
    "red green blue yellow white black orange purple colour color of the car the sky the text",
    "0123456789 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14",
    "You are a helpful assistant. Answer with a single word or phrase.",
    "<tool_call> {\"name\": \"get_crops\", \"arguments\": {\"regions\": [\"4\"]}} </tool_call>",
    "How many people are in the picture? Which sign says stop? What time does the clock show?",
)

_QWEN_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)
# Ordinary (non-special) added tokens of the real Qwen tokenizers: they survive decode(skip_special_tokens=True).
_QWEN_ADDED = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>")
_IDEFICS_SPECIALS = (
    "<|begin_of_text|>", "<|end_of_text|>", "<fake_token_around_image>", "<image>", "<end_of_utterance>",
    "<global-img>", *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
)
_LLAVA_SPECIALS = ("<pad>", "<s>", "</s>", "<image>")

# Images rendered as "<image>\n" in place, so several images may sit in any user turn.
_LLAVA_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{ content }}{%- else -%}"
    "{%- for part in content -%}"
    "{%- if part['type'] == 'image' -%}{{ '<image>\\n' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ 'SYSTEM: ' }}{{ render(message['content']) }}{{ '\\n' }}"
    "{%- elif message['role'] == 'user' -%}{{ 'USER: ' }}{{ render(message['content']) }}{{ '\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}{{ 'ASSISTANT: ' }}{{ render(message['content']) }}{{ '</s>\\n' }}"
    "{%- else -%}{{ 'TOOL: ' }}{{ render(message['content']) }}{{ '\\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)

#: What the real checkpoints ship: chat template (TRL's byte copies) and image-processor pixel settings.
#: Qwen2-VL-7B-Instruct and Qwen2.5-VL-7B-Instruct share one template (ChatML, vision tokens, a default system
#: prompt, no tools); their preprocessor_config.json: min_pixels 3136, max_pixels 12845056, patch 14. Qwen3-VL
#: ships a tool-capable template and patch 16 with size {shortest_edge: 65536, longest_edge: 16777216}.
#: Idefics3-8B-Llama3: size longest_edge 4*364, max_image_size 364, image_seq_len 169.
CHECKPOINT_SETTINGS: dict[str, dict[str, Any]] = {
    "qwen2-vl": {"template": "qwen2_5_vl", "min_pixels": 3136, "max_pixels": 12_845_056},
    "qwen2.5-vl": {"template": "qwen2_5_vl", "min_pixels": 3136, "max_pixels": 12_845_056},
    "qwen3-vl": {"template": "qwen3_vl", "min_pixels": 65_536, "max_pixels": 16_777_216},
    "idefics3": {"template": "idefics3", "longest_edge": 4 * 364, "tile": 364, "image_seq_len": 169},
}
CHECKPOINT_FAMILIES: tuple[str, ...] = tuple(CHECKPOINT_SETTINGS)

#: Tiny Idefics3 tiling: 64 px tiles, long side resized to 3 tiles, 4 tokens per tile (16x16 patches, 2x2 merge).
IDEFICS_TILE, IDEFICS_LONGEST_EDGE, IDEFICS_SEQ_LEN = 64, 3 * 64, 4
#: Tiny LLaVA: CLIP at 56 px with 14 px patches -> 16 tokens per image, whatever its size.
LLAVA_IMAGE_SIZE, LLAVA_PATCH = 56, 14


def qwen_pixels(family: str) -> tuple[int, int]:
    """``(min_pixels, max_pixels)`` of the tiny Qwen image processors."""
    if family == "qwen3-vl":
        return 64 * 64, 32 * 32 * 1024
    if family in ("qwen2-vl", "qwen2.5-vl"):
        return 56 * 56, 28 * 28 * 1024
    raise ValueError(f"{family!r} is not a Qwen family; choose qwen2-vl, qwen2.5-vl or qwen3-vl")


def token_family_overrides(family: str) -> dict[str, Any]:
    """Settings that make ``awares_tool.tokens.get_family(<token family>, **these)`` match the tiny model.

    The token families default to the real checkpoints' image processors; the tiny ones are smaller.
    """
    if family in ("qwen2-vl", "qwen2.5-vl", "qwen3-vl"):
        min_pixels, max_pixels = qwen_pixels(family)
        return {"min_pixels": min_pixels, "max_pixels": max_pixels}
    if family == "idefics3":
        return {"longest_edge": IDEFICS_LONGEST_EDGE, "tile": IDEFICS_TILE, "image_seq_len": IDEFICS_SEQ_LEN}
    if family == "llava":
        return {"image_size": LLAVA_IMAGE_SIZE, "patch": LLAVA_PATCH}
    raise ValueError(f"unknown tiny VLM family {family!r}; choose one of {', '.join(FAMILIES)}")


def _bpe_tokenizer(specials: tuple[str, ...], added: tuple[str, ...] = (), *, vocab_size: int = 600, **kw: Any) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast  # an alias of TokenizersBackend in transformers 5

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(specials), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(CORPUS), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kw)
    fast.add_special_tokens({"additional_special_tokens": list(specials)})
    if added:
        fast.add_tokens(list(added))
    return fast


def _trl_template(name: str) -> str:
    """A chat template shipped with the installed TRL, byte for byte (TRL matches templates by identity).

    Found through the package spec rather than ``import trl``, which takes seconds.
    """
    spec = importlib.util.find_spec("trl")
    if spec is None or spec.origin is None:
        raise ImportError(f"the tiny VLMs use TRL's {name}.jinja; install the train extra: pip install 'awares[train]'")
    return (Path(spec.origin).parent / "chat_templates" / f"{name}.jinja").read_text()


def _qwen_text(tok: Any, **extra: Any) -> dict[str, Any]:
    return dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=tok.pad_token_id, **extra,
    )


def _build_qwen(family: str, checkpoint: bool = False) -> tuple[Any, Any]:
    import transformers as tf
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from awares_tool.backends.hf_processors import image_only_processor_class, torchvision_usable

    tok = _bpe_tokenizer(
        _QWEN_SPECIALS, _QWEN_ADDED, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None,
        unk_token=None, padding_side="left",
    )
    # fitted: TRL's qwen3_vl.jinja for every Qwen family (same vision tokens, supports tools); checkpoint: the real one
    template = _trl_template(CHECKPOINT_SETTINGS[family]["template"] if checkpoint else "qwen3_vl")
    tok.chat_template = template
    ids = tok.convert_tokens_to_ids
    tokens = dict(
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    rope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}  # sums to head_dim / 2 = 8
    patch = 16 if family == "qwen3-vl" else 14
    if family == "qwen2.5-vl":
        cfg = tf.Qwen2_5_VLConfig(
            text_config=_qwen_text(tok, eos_token_id=tok.eos_token_id, bos_token_id=None, rope_parameters=rope),
            vision_config=dict(
                depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1],
            ),
            **tokens,
        )
        model_cls, proc_cls = tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLProcessor
    elif family == "qwen2-vl":
        cfg = tf.Qwen2VLConfig(
            text_config=_qwen_text(tok, eos_token_id=tok.eos_token_id, bos_token_id=None, rope_parameters=rope),
            vision_config=dict(
                depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=2, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2,
            ),
            **tokens,
        )
        model_cls, proc_cls = tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLProcessor
    else:
        cfg = tf.Qwen3VLConfig(
            text_config=_qwen_text(tok, head_dim=16, rope_parameters={**rope, "mrope_interleaved": True}),
            vision_config=dict(
                depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=16,
                spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64, deepstack_visual_indexes=[0],
            ),
            **tokens,
        )
        model_cls, proc_cls = tf.Qwen3VLForConditionalGeneration, tf.Qwen3VLProcessor
    min_pixels, max_pixels = qwen_pixels(family)
    if checkpoint:
        min_pixels, max_pixels = CHECKPOINT_SETTINGS[family]["min_pixels"], CHECKPOINT_SETTINGS[family]["max_pixels"]
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=patch, merge_size=2, size={"shortest_edge": min_pixels, "longest_edge": max_pixels}
    )
    if torchvision_usable():
        from transformers import Qwen2VLVideoProcessor

        proc = proc_cls(
            image_processor=image_processor, tokenizer=tok, video_processor=Qwen2VLVideoProcessor(),
            chat_template=template,
        )
    else:  # see awares_tool.backends.hf_processors: no video processor without torchvision
        proc = image_only_processor_class(proc_cls)(image_processor=image_processor, tokenizer=tok, chat_template=template)
    return model_cls(cfg), proc


def _build_idefics3(checkpoint: bool = False) -> tuple[Any, Any]:
    import transformers as tf
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tok = _bpe_tokenizer(
        _IDEFICS_SPECIALS, eos_token="<end_of_utterance>", pad_token="<|end_of_text|>", bos_token="<|begin_of_text|>",
        unk_token=None, padding_side="left",
    )
    template = _trl_template("idefics3")
    tok.chat_template = template
    real = CHECKPOINT_SETTINGS["idefics3"]
    tile, patch, longest, seq_len = (real["tile"], 14, real["longest_edge"], real["image_seq_len"]) if checkpoint \
        else (IDEFICS_TILE, 16, IDEFICS_LONGEST_EDGE, IDEFICS_SEQ_LEN)
    cfg = tf.Idefics3Config(
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=tile,
            patch_size=patch,
        ),
        text_config=dict(
            model_type="llama", vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        ),
        scale_factor=2,  # (tile / patch)**2 / 2**2 tokens per tile: 4 fitted, 169 as the real checkpoint
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": longest}, max_image_size={"longest_edge": tile},
    )
    proc = tf.Idefics3Processor(
        image_processor=image_processor, tokenizer=tok, image_seq_len=seq_len, chat_template=template
    )
    return tf.Idefics3ForConditionalGeneration(cfg), proc


def _build_llava() -> tuple[Any, Any]:
    import transformers as tf
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = _bpe_tokenizer(_LLAVA_SPECIALS, eos_token="</s>", pad_token="<pad>", bos_token=None, unk_token=None,
                         padding_side="left")
    tok.chat_template = _LLAVA_TEMPLATE
    n_tokens = (LLAVA_IMAGE_SIZE // LLAVA_PATCH) ** 2
    cfg = tf.LlavaConfig(
        vision_config=dict(
            model_type="clip_vision_model", image_size=LLAVA_IMAGE_SIZE, patch_size=LLAVA_PATCH, hidden_size=32,
            intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, projection_dim=32,
        ),
        text_config=dict(
            model_type="qwen2", vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        ),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=n_tokens,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": LLAVA_IMAGE_SIZE}, crop_size={"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE}
    )
    proc = tf.LlavaProcessor(
        image_processor=image_processor, tokenizer=tok, patch_size=LLAVA_PATCH,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, image_token="<image>",
        chat_template=_LLAVA_TEMPLATE,
    )
    return tf.LlavaForConditionalGeneration(cfg), proc


_BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "qwen2.5-vl": functools.partial(_build_qwen, "qwen2.5-vl"),
    "qwen2-vl": functools.partial(_build_qwen, "qwen2-vl"),
    "qwen3-vl": functools.partial(_build_qwen, "qwen3-vl"),
    "idefics3": _build_idefics3,
    "llava": _build_llava,
}


def build_tiny_vlm(family: str, out_dir: Path, *, seed: int = 0, checkpoint: bool = False) -> Path:
    """Build a tiny random VLM with its processor and save both into ``out_dir``.

    The folder reloads with ``AutoModelForImageTextToText.from_pretrained(out_dir)`` and
    :func:`awares_tool.backends.hf_processors.load_processor`. Same ``family`` and ``seed`` give the
    same weights.

    Args:
        family: One of :data:`FAMILIES`.
        out_dir: Folder to write (created if missing).
        seed: torch seed for the random weights.
        checkpoint: Carry the real checkpoint's chat template and pixel settings (see the module docstring);
            only for :data:`CHECKPOINT_FAMILIES`.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: Unknown family.
    """
    if family not in _BUILDERS:
        raise ValueError(f"unknown tiny VLM family {family!r}; choose one of {', '.join(FAMILIES)}")
    if checkpoint and family not in CHECKPOINT_SETTINGS:
        raise ValueError(f"no checkpoint settings for {family!r}; choose one of {', '.join(CHECKPOINT_FAMILIES)}")
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model, proc = _BUILDERS[family](checkpoint=True) if checkpoint else _BUILDERS[family]()
    tok = proc.tokenizer
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    if getattr(model.generation_config, "bos_token_id", None) is None and tok.bos_token_id is not None:
        model.generation_config.bos_token_id = tok.bos_token_id
    model.eval()
    model.save_pretrained(out)
    proc.save_pretrained(out)
    if checkpoint:
        _name_stock_processor(out)
    n_params = sum(p.numel() for p in model.parameters())
    log.debug("built tiny %s (%d params) in %s", family, n_params, out)
    return out


def _name_stock_processor(out: Path) -> None:
    """Name the stock processor class in the saved files, as the real checkpoints do.

    Without torchvision the folder was saved by the image-only subclass, under its own name; a real Qwen-VL
    checkpoint names ``Qwen2_5_VLProcessor`` (etc.), whose video processor cannot load here, so the fixture
    must too (a loader that only handled our own name broke on every downloaded checkpoint).
    """
    from awares_tool.backends.hf_processors import PROCESSOR_CLASS_FILES

    for name in PROCESSOR_CLASS_FILES:
        f = out / name
        if f.is_file():
            data = json.loads(f.read_text())
            if str(data.get("processor_class", "")).endswith("ImageOnly"):
                data["processor_class"] = data["processor_class"].removesuffix("ImageOnly")
                f.write_text(json.dumps(data, indent=2) + "\n")


def _build_in_temp_folder(family: str, kind: str, checkpoint: bool = False) -> Path:
    """``build_tiny_vlm`` into a fresh temporary folder that is removed when the process exits."""
    root = Path(tempfile.mkdtemp(prefix=f"awares-{kind}-{family}-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return build_tiny_vlm(family, root / "model", checkpoint=checkpoint)


@functools.cache
def tiny_vlm_path(family: str) -> Path:
    """A tiny VLM of ``family`` built once per process into a temporary folder (removed at exit)."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown tiny VLM family {family!r}; choose one of {', '.join(FAMILIES)}")
    return _build_in_temp_folder(family, "tiny")


@functools.cache
def checkpoint_vlm_path(family: str) -> Path:
    """A tiny VLM of ``family`` with the real checkpoint's template and pixel settings, built once per process."""
    if family not in CHECKPOINT_SETTINGS:
        raise ValueError(f"no checkpoint settings for {family!r}; choose one of {', '.join(CHECKPOINT_FAMILIES)}")
    return _build_in_temp_folder(family, "ckpt", checkpoint=True)
