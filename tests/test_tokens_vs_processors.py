"""Our model-free token counts against the real transformers processors, built offline in-process.

Every processor is constructed from its class with the hub settings of the released models (no
download) and run on real PIL images; the count to match is what the processor gives the model:
``image_grid_thw`` for Qwen, the expanded ``<image>`` placeholders in ``input_ids`` for LLaVA,
LLaVA-NeXT and Idefics3/SmolVLM. torchvision is not installed here, so the ``*Pil`` image
processors are used (transformers falls back to them itself).
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("numpy")

from PIL import Image  # noqa: E402

from awares_tool.tokens import get_family  # noqa: E402

pytestmark = pytest.mark.hf

SIZES = [(56, 56), (448, 448), (1000, 333), (1536, 1024), (2048, 2048), (30, 2000), (1024, 768), (333, 1000)]
# Sizes where rounding is delicate: Qwen's round/floor/ceil branches, exact 200:1, LLaVA-NeXT strips.
QWEN_EXTRA = [(1, 1), (5, 900), (3, 600), (27, 29), (4000, 20), (14, 14), (1003, 1003)]
STRIPS = [(600, 4), (4, 600), (700, 341), (337, 1000), (1009, 337)]

IDEFICS_SPECIALS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)
]


def _tiny_tokenizer(specials):
    """A word-level tokenizer that knows only the family's special tokens; enough to expand images."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "describe": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[UNK]")
    fast.add_special_tokens({"additional_special_tokens": list(specials)})
    return fast


def _image_tokens(processor, size) -> int:
    out = processor(text="describe <image>", images=Image.new("RGB", size, (120, 30, 200)), return_tensors="np")
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    return int((out["input_ids"][0] == image_id).sum())


# --------------------------------------------------------------------------------------- Qwen
@pytest.fixture(scope="module")
def qwen_processors():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    # The full Qwen2/2.5/3-VL *processors* need a video processor, which needs torchvision (not
    # installed: its CPU wheel for torch 2.13 fails to import). The image processor alone yields
    # image_grid_thw, from which Qwen2VLProcessor.replace_image_token derives the token count.
    q25 = get_family("qwen2.5-vl")
    q3 = get_family("qwen3-vl")
    return {
        "qwen2.5-vl": Qwen2VLImageProcessorPil(
            size={"shortest_edge": q25.min_pixels, "longest_edge": q25.max_pixels}
        ),
        # transformers maps qwen3_vl to Qwen2VLImageProcessor(Pil); the hub config sets patch 16.
        "qwen3-vl": Qwen2VLImageProcessorPil(
            patch_size=16, size={"shortest_edge": q3.min_pixels, "longest_edge": q3.max_pixels}
        ),
        "qwen2.5-vl@hf-default": Qwen2VLImageProcessorPil(),
    }


@pytest.mark.parametrize("family_name", ["qwen2.5-vl", "qwen3-vl", "qwen2.5-vl@hf-default"])
@pytest.mark.parametrize("size", SIZES + QWEN_EXTRA)
def test_qwen_matches_image_grid_thw(qwen_processors, family_name, size):
    processor = qwen_processors[family_name]
    if family_name.endswith("@hf-default"):
        family = get_family("qwen2.5-vl", min_pixels=56 * 56, max_pixels=28 * 28 * 1280)
    else:
        family = get_family(family_name)
    out = processor(images=Image.new("RGB", size), return_tensors="np")
    t, gh, gw = (int(v) for v in out["image_grid_thw"][0])
    assert (t, gh, gw) == (1, *(s // family.patch for s in reversed(family.resized_size(*size))))
    assert family.count(*size) == gh * gw // processor.merge_size**2
    assert family.count(*size) == processor.get_number_of_image_patches(size[1], size[0]) // 4


def test_qwen_aspect_error_matches_processor(qwen_processors):
    from awares_tool.errors import TokenCountError

    with pytest.raises(ValueError, match="aspect ratio"):
        qwen_processors["qwen2.5-vl"](images=Image.new("RGB", (2, 500)), return_tensors="np")
    with pytest.raises(TokenCountError):
        get_family("qwen2.5-vl").count(2, 500)


# ------------------------------------------------------------------------------------- LLaVA
@pytest.fixture(scope="module")
def llava_processor():
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    # llava-hf/llava-1.5-7b-hf: CLIP 336 px, patch 14, "default" strategy, CLS counted then dropped.
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=_tiny_tokenizer(["<image>"]),
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


@pytest.mark.parametrize("size", SIZES)
def test_llava15_matches_processor(llava_processor, size):
    assert get_family("llava-1.5").count(*size) == _image_tokens(llava_processor, size) == 576


# -------------------------------------------------------------------------------- LLaVA-NeXT
@pytest.fixture(scope="module")
def llava_next_processor():
    from transformers import LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    # llava-hf/llava-v1.6-*-hf settings; the pinpoints are the class defaults and must equal ours.
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}
    )
    assert [tuple(p) for p in image_processor.image_grid_pinpoints] == list(get_family("llava-next").pinpoints)
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=_tiny_tokenizer(["<image>"]),
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


@pytest.mark.parametrize("size", SIZES + STRIPS)
def test_llava_next_matches_processor(llava_next_processor, size):
    family = get_family("llava-next")
    out = llava_next_processor.image_processor(images=Image.new("RGB", size), return_tensors="np")
    canvas_w, canvas_h = family.resized_size(*size)
    assert out["pixel_values"].shape[1] == 1 + (canvas_w // 336) * (canvas_h // 336)  # base + tiles
    assert family.count(*size) == _image_tokens(llava_next_processor, size)


@pytest.fixture(scope="module")
def llava_next_model():
    """A 1-layer random LLaVA-NeXT whose pack_image_features is the ground truth the processor mirrors."""
    torch = pytest.importorskip("torch")
    from transformers import LlavaNextConfig, LlavaNextModel

    torch.manual_seed(0)
    config = LlavaNextConfig(
        vision_config=dict(
            model_type="clip_vision_model",
            image_size=336,
            patch_size=14,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
        ),
        text_config=dict(
            model_type="qwen2",
            vocab_size=32,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        ),
        image_token_id=3,
    )
    return LlavaNextModel(config).eval()


@pytest.mark.parametrize("size", SIZES + STRIPS + [(49, 1)])
def test_llava_next_matches_model_feature_packing(llava_next_model, size):
    torch = pytest.importorskip("torch")
    family = get_family("llava-next")
    canvas_w, canvas_h = family.resized_size(*size)
    n_views = 1 + (canvas_w // 336) * (canvas_h // 336)
    features = [torch.zeros(n_views, 24 * 24, 8)]  # what the CLIP tower gives after dropping CLS
    with torch.no_grad():
        _, lengths = llava_next_model.pack_image_features(
            features,
            torch.tensor([[size[1], size[0]]]),
            "default",
            image_newline=llava_next_model.image_newline,
        )
    assert family.count(*size) == int(lengths[0])


# ---------------------------------------------------------------------------- Idefics3/SmolVLM
@pytest.fixture(scope="module")
def idefics_processors():
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    # SmolVLMProcessor itself cannot be built here: its __init__ requires a video_processor, and
    # SmolVLMVideoProcessor needs torchvision. Its image expansion is Idefics3's, so the SmolVLM
    # image processor (hub settings of SmolVLM-256M/500M-Instruct) runs inside Idefics3Processor.
    smol = get_family("smolvlm")
    return {
        "idefics3": Idefics3Processor(
            image_processor=Idefics3ImageProcessorPil(),  # class defaults = Idefics3-8B-Llama3 hub config
            tokenizer=_tiny_tokenizer(IDEFICS_SPECIALS),
            image_seq_len=169,
        ),
        "smolvlm": Idefics3Processor(
            image_processor=SmolVLMImageProcessorPil(
                size={"longest_edge": smol.longest_edge}, max_image_size={"longest_edge": smol.tile}
            ),
            tokenizer=_tiny_tokenizer(IDEFICS_SPECIALS),
            image_seq_len=smol.image_seq_len,
        ),
    }


@pytest.mark.parametrize("family_name", ["idefics3", "smolvlm"])
@pytest.mark.parametrize("size", SIZES + [(700, 341), (1009, 337)])
def test_idefics_matches_processor(idefics_processors, family_name, size):
    processor = idefics_processors[family_name]
    assert get_family(family_name).count(*size) == _image_tokens(processor, size)


def test_idefics_without_splitting_matches_processor(idefics_processors):
    processor = idefics_processors["idefics3"]
    out = processor(
        text="describe <image>",
        images=Image.new("RGB", (1024, 768)),
        do_image_splitting=False,
        return_tensors="np",
    )
    real = int((out["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids("<image>")).sum())
    assert get_family("idefics3", do_image_splitting=False).count(1024, 768) == real == 169
