"""Tokenizer, processor and model config of the tiny Qwen2.5-VL (built from scratch, offline)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from awares_train.tiny import CROPS_TURN_TEXT, SYSTEM_PROMPT

__all__ = ["QWEN_SPECIALS", "vision_config", "build_tokenizer", "build_processor", "build_model", "MIN_PIXELS",
           "MAX_PIXELS", "tiny_chat_template", "set_chat_format"]

logger = logging.getLogger(__name__)

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_ADDED = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"]
# Qwen2's pre-tokenizer regex: digits are split one per token, which keeps codes easy to copy.
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Image budget: 448x448 keeps 256 tokens (not downscaled); 224x224 gives 64; min keeps tiny crops valid.
MIN_PIXELS = 56 * 56
MAX_PIXELS = 28 * 28 * 1024
VISION = dict(depth=4, hidden_size=128, intermediate_size=256, num_heads=4, out_hidden_size=256, patch_size=14,
              temporal_patch_size=2, spatial_merge_size=2, window_size=112, fullatt_block_indexes=[1, 3])
TEXT = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2)


def vision_config() -> Any:
    """The vision tower config (128 wide x 4 blocks; fullatt indexes overridden for the shallow depth)."""
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig

    return Qwen2_5_VLVisionConfig(**VISION)


def _corpus() -> list[str]:
    from awares_train.data.synthetic import COLORS, QUESTIONS, SHAPES

    lines = [SYSTEM_PROMPT, CROPS_TURN_TEXT]
    for r in ["0", "1", "2", "3", "4", "5", "6", "7", "8", "all"]:
        lines += [f"GET_CROPS: ['{r}']", CROPS_TURN_TEXT.format(regions=r)]
    for s in SHAPES:
        lines.append(QUESTIONS["color"].format(shape=s))
    for c in COLORS:
        lines.append(QUESTIONS["shape"].format(color=c))
    lines += [QUESTIONS["code"], QUESTIONS["count"], "zero one two three", "assistant user system",
              "The answer is 0123456789. Describe the image."]
    return lines * 20 + list(COLORS) * 20 + list(SHAPES) * 20


# The tools block of TRL's Qwen3-VL template, and the one-line version the tiny model uses instead: with a
# 478-token vocabulary the full block (instructions + JSON schema) costs ~530 tokens per sample, twice the
# rest of a trajectory, and the tool is already described by the system prompt.
_QWEN_TOOLS_BLOCK = """    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}"""
_COMPACT_TOOLS_BLOCK = """    {{- "Tools:" }}
    {%- for tool in tools %}
        {{- " " + (tool.function.name if tool.function is defined else tool.name) }}
    {%- endfor %}
    {{- "<|im_end|>\\n" }}"""


def tiny_chat_template() -> str:
    """TRL's ``qwen3_vl_training.jinja`` (Qwen3-VL with ``{% generation %}`` markers, which SFT's
    assistant-only loss needs) with a one-line tools block; tool calls and responses render unchanged."""
    import trl

    qwen = (Path(trl.__file__).parent / "chat_templates" / "qwen3_vl_training.jinja").read_text()
    if _QWEN_TOOLS_BLOCK not in qwen:  # pragma: no cover - a TRL release changed its template
        raise RuntimeError("TRL's qwen3_vl_training.jinja changed: update awares_train.tiny.model._QWEN_TOOLS_BLOCK")
    return qwen.replace(_QWEN_TOOLS_BLOCK, _COMPACT_TOOLS_BLOCK)


def set_chat_format(tokenizer: Any) -> Any:
    """Give ``tokenizer`` the tiny chat template and the Qwen tool-call parser.

    TRL recognises chat templates by their exact text to pick a response parser; ours is not one of
    them, so the tokenizer carries the parser itself (``response_template``, saved in
    ``tokenizer_config.json``): GRPO's tool loop and ``tokenizer.parse_response`` then read
    ``<tool_call>{json}</tool_call>`` exactly as for Qwen3-VL.
    """
    from trl.chat_template_utils import qwen3_template

    tokenizer.chat_template = tiny_chat_template()
    tokenizer.response_template = qwen3_template
    return tokenizer


def build_tokenizer(vocab_size: int = 512) -> Any:
    """Byte-level BPE with Qwen specials, trained in-process on our prompts; the tiny chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(_corpus(), trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(QWEN_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, padding_side="left")
    fast.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIALS)})
    fast.add_tokens(list(QWEN_ADDED))
    return set_chat_format(fast)


def build_processor(tokenizer: Any, max_pixels: int = MAX_PIXELS) -> Any:
    """Image-only Qwen2.5-VL processor (no torchvision needed) with our pixel budget."""
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from awares_tool.backends.hf_processors import image_only_processor_class, torchvision_usable

    ip = Qwen2VLImageProcessorPil(size={"shortest_edge": MIN_PIXELS, "longest_edge": max_pixels})
    if torchvision_usable():  # pragma: no cover - not on the reference machine
        from transformers import Qwen2VLVideoProcessor

        return Qwen2_5_VLProcessor(image_processor=ip, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                                   chat_template=tokenizer.chat_template)
    cls = image_only_processor_class(Qwen2_5_VLProcessor)
    return cls(image_processor=ip, tokenizer=tokenizer, chat_template=tokenizer.chat_template)


def build_model(tokenizer: Any, *, mrope_section: list[int] | None = None, rope_theta: float = 10000.0) -> Any:
    """Random-init Qwen2.5-VL sized for CPU training (~4.4 M parameters); the rope arguments are for experiments."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    c = tokenizer.convert_tokens_to_ids
    head_dim = TEXT["hidden_size"] // TEXT["num_attention_heads"]
    # M-RoPE splits the head's rotary pairs into chunks for (time, row, column), fastest frequencies first, so
    # Qwen's [16, 24, 24] ratio leaves the column chunk only the slowest ones: at head_dim 64 over grids at most
    # 16 tokens wide they turn < 0.05 rad from one edge to the other, and a model trained from random weights
    # told top from bottom but not left from right (measured: region requests 50/50 between the two quadrants
    # of the right row). Time is constant over an image, so it keeps 2 pairs; rows get the next 5, columns the
    # rest, which starts at 0.13 rad per token.
    sec = mrope_section or [2, 5, head_dim // 2 - 7]
    if sum(sec) != head_dim // 2:
        raise ValueError(f"mrope_section must sum to head_dim / 2 = {head_dim // 2}, got {sec}")
    cfg = Qwen2_5_VLConfig(
        vision_config=dict(VISION),
        text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=2048, **TEXT,
                         rope_parameters=dict(rope_type="default", rope_theta=rope_theta, mrope_section=sec),
                         bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        image_token_id=c("<|image_pad|>"), video_token_id=c("<|video_pad|>"),
        vision_start_token_id=c("<|vision_start|>"), vision_end_token_id=c("<|vision_end|>"),
        tie_word_embeddings=True)
    cfg._attn_implementation = "sdpa"
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model
