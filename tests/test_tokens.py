"""Visual-token accounting: hand-computed counts, invariants, RTR and the token report."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from awares_tool.errors import AwaresError, TokenCountError
from awares_tool.episode.costs import TokenReport, token_report
from awares_tool.tokens import (
    FAMILY_NAMES,
    GenericFamily,
    QwenFamily,
    TokenFamily,
    count_visual_tokens,
    get_family,
    rtr,
)

# transformers' own Qwen2VLImageProcessor defaults, as in the table of shared/notes/ml-stack.md
HF_DEFAULT = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280}
LOWRES_BUDGET = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 256}


def test_family_names_are_exact():
    assert FAMILY_NAMES == (
        "qwen2-vl",
        "qwen2.5-vl",
        "qwen3-vl",
        "llava-1.5",
        "llava-next",
        "idefics3",
        "smolvlm",
        "generic",
    )
    for name in FAMILY_NAMES:
        family = get_family(name)
        assert isinstance(family, TokenFamily)
        assert family.name == name


# --------------------------------------------------------------------------------------- Qwen
@pytest.mark.parametrize(
    ("size", "resized", "tokens"),
    [
        ((448, 448), (448, 448), 256),
        ((1024, 1024), (1036, 1036), 1369),  # 37 x 37, under the 1,605,632 cap
        ((1536, 1536), (1260, 1260), 2025),  # capped: 1540^2 > max_pixels, scaled to 45 x 45
        ((2048, 2048), (1260, 1260), 2025),
        ((1024, 768), (1036, 756), 999),  # 37 x 27
        ((512, 384), (504, 392), 252),  # the halved low-res view of 1024x768: 18 x 14
        ((128, 128), (168, 168), 36),  # below min_pixels = 32*28*28: scaled up to 6 x 6
    ],
)
def test_qwen25_defaults_hand_computed(size, resized, tokens):
    family = get_family("qwen2.5-vl")
    assert family.resized_size(*size) == resized
    assert family.count(*size) == tokens


@pytest.mark.parametrize(
    ("size", "hf_default", "lowres_budget"),
    [
        ((384, 384), 196, 196),
        ((448, 448), 256, 256),
        ((768, 768), 729, 225),
        ((1024, 1024), 1225, 256),
        ((1536, 1536), 1225, 225),
        ((1536, 1024), 1247, 247),
        ((2048, 2048), 1225, 256),
        ((128, 128), 25, 25),
    ],
)
def test_qwen25_budgets_match_the_measured_processor_table(size, hf_default, lowres_budget):
    assert get_family("qwen2.5-vl", **HF_DEFAULT).count(*size) == hf_default
    assert get_family("qwen2.5-vl", **LOWRES_BUDGET).count(*size) == lowres_budget


def test_qwen2_and_qwen25_share_the_rule_and_qwen3_uses_32px():
    assert get_family("qwen2-vl").count(1000, 333) == get_family("qwen2.5-vl").count(1000, 333) == 432
    qwen3 = get_family("qwen3-vl")
    assert (qwen3.patch, qwen3.merge, qwen3.min_pixels, qwen3.max_pixels) == (16, 2, 65_536, 16_777_216)
    assert qwen3.count(1024, 768) == 32 * 24
    assert qwen3.count(2048, 2048) == 64 * 64
    assert qwen3.count(56, 56) == 64  # scaled up to the 256 x 256 minimum
    assert qwen3.resized_size(1000, 333) == (992, 320)


def test_qwen_aspect_ratio_over_200_is_a_typed_error():
    family = get_family("qwen2.5-vl")
    assert family.count(1, 200) >= 1  # exactly 200 is still accepted, as in transformers
    with pytest.raises(TokenCountError, match="aspect ratio") as info:
        family.count(1, 201)
    assert "1x201" in str(info.value)
    assert isinstance(info.value, AwaresError)
    with pytest.raises(TokenCountError):
        get_family("qwen3-vl").resized_size(5000, 10)


def test_tiny_sides_are_scaled_up_not_refused():
    # transformers 5.24's smart_resize has no "side < factor" error any more; min_pixels rescues it.
    assert get_family("qwen2.5-vl").resized_size(1, 1) == (168, 168)
    assert get_family("qwen2.5-vl").count(5, 900) == 76


@pytest.mark.parametrize("bad", [(0, 10), (10, 0), (-3, 5)])
def test_empty_sizes_are_refused(bad):
    for name in FAMILY_NAMES:
        with pytest.raises(TokenCountError, match="at least 1 pixel"):
            get_family(name).count(*bad)


def test_non_int_sizes_are_a_type_error():
    with pytest.raises(TypeError):
        get_family("qwen2.5-vl").count(10.5, 20)  # type: ignore[arg-type]


MAX_PIXEL_CHOICES = [28 * 28 * 256, 28 * 28 * 1280, 1_605_632, 28 * 28 * 4096]


@st.composite
def _sizes_within_aspect(draw, max_side=6000):
    w = draw(st.integers(1, max_side))
    h = draw(st.integers(max(1, math.ceil(w / 200)), min(max_side, w * 200)))
    return w, h


@settings(max_examples=300, deadline=None)
@given(size=_sizes_within_aspect(), max_pixels=st.sampled_from(MAX_PIXEL_CHOICES))
def test_qwen_bounds(size, max_pixels):
    family = get_family("qwen2.5-vl", max_pixels=max_pixels)
    w, h = family.resized_size(*size)
    assert w % 28 == 0 and h % 28 == 0 and w >= 28 and h >= 28
    assert family.min_pixels <= w * h <= max_pixels
    n = family.count(*size)
    assert n == (w // 28) * (h // 28)
    assert 1 <= n <= max_pixels // 784


@settings(max_examples=200, deadline=None)
@given(w=st.integers(1, 5000), h=st.integers(1, 5000))
def test_qwen_errors_exactly_past_ratio_200(w, h):
    family = get_family("qwen2-vl")
    if max(w, h) / min(w, h) > 200:
        with pytest.raises(TokenCountError):
            family.count(w, h)
    else:
        assert family.count(w, h) >= 1


# ----------------------------------------------------------------------------- LLaVA families
@settings(max_examples=100, deadline=None)
@given(w=st.integers(1, 5000), h=st.integers(1, 5000))
def test_llava15_is_fixed_576(w, h):
    family = get_family("llava-1.5")
    assert family.count(w, h) == 576
    assert family.resized_size(w, h) == (336, 336)


@pytest.mark.parametrize(
    ("size", "canvas", "tokens"),
    [
        # square -> 672x672 canvas, 2x2 tiles: 48*48 unpadded + 48 newlines + 576 base
        ((672, 672), (672, 672), 48 * 48 + 48 + 576),
        ((448, 448), (672, 672), 2928),
        # 1000x333 -> 1008x336 canvas (3x1 tiles): 24 rows of 72 + 24 newlines + 576
        ((1000, 333), (1008, 336), 24 * 72 + 24 + 576),
        # 1024x768 -> 672x672: width-limited, height unpadded to int(768*48/1024)=36 rows
        ((1024, 768), (672, 672), 36 * 48 + 36 + 576),
    ],
)
def test_llava_next_hand_computed(size, canvas, tokens):
    family = get_family("llava-next")
    assert family.resized_size(*size) == canvas
    assert family.count(*size) == tokens


@settings(max_examples=200, deadline=None)
@given(w=st.integers(1, 5000), h=st.integers(1, 5000))
def test_llava_next_bounds(w, h):
    n = get_family("llava-next").count(w, h)
    # extreme strips unpad to zero tile rows (e.g. 49x1), leaving only the 576 base tokens
    assert 576 <= n <= 48 * 48 + 48 + 576


# ------------------------------------------------------------------------------ Idefics/SmolVLM
def test_idefics3_and_smolvlm_hand_computed():
    # 1024x768 -> long side 1456, short 1092 = 3 x 364: 4 x 3 tiles + the global image
    assert get_family("idefics3").resized_size(1024, 768) == (1456, 1092)
    assert get_family("idefics3").count(1024, 768) == 169 * 13
    assert get_family("smolvlm").resized_size(1024, 768) == (2048, 1536)
    assert get_family("smolvlm").count(1024, 768) == 64 * 13
    # small images are upscaled to the long-side target too: 56x56 -> 4 x 4 tiles + global
    assert get_family("idefics3").count(56, 56) == 169 * 17
    assert get_family("idefics3", do_image_splitting=False).count(1024, 768) == 169


@settings(max_examples=200, deadline=None)
@given(w=st.integers(1, 5000), h=st.integers(1, 5000), name=st.sampled_from(["idefics3", "smolvlm"]))
def test_idefics_counts_are_whole_tiles(w, h, name):
    family = get_family(name)
    n = family.count(w, h)
    assert n % family.image_seq_len == 0
    assert 2 <= n // family.image_seq_len <= 4 * 4 + 1
    rw, rh = family.resized_size(w, h)
    assert rw % family.tile == 0 and rh % family.tile == 0
    assert max(rw, rh) == family.longest_edge


# --------------------------------------------------------------------------------------- generic
def test_generic_counts():
    assert get_family("generic").count(224, 224) == 196
    assert get_family("generic").count(225, 224) == 15 * 14  # partial patches count
    assert get_family("generic", patch=14, merge=2).count(448, 448) == 256
    assert get_family("generic", patch=14, merge=2).count(14, 14) == 1  # a partial merge group is a token
    capped = get_family("generic", patch=16, max_pixels=224 * 224)
    assert capped.resized_size(448, 448) == (224, 224)
    assert capped.count(448, 448) == 196


@settings(max_examples=200, deadline=None)
@given(
    w=st.integers(1, 3000),
    h=st.integers(1, 3000),
    dw=st.integers(0, 500),
    dh=st.integers(0, 500),
    merge=st.integers(1, 3),
)
def test_generic_is_monotone(w, h, dw, dh, merge):
    family = get_family("generic", patch=14, merge=merge)
    assert family.count(w, h) <= family.count(w + dw, h + dh)


# -------------------------------------------------------------------------------------- registry
@pytest.mark.parametrize("alias", ["qwen2_5_vl", "qwen2.5vl", "Qwen2.5-VL", "QWEN25VL", "qwen2.5 vl"])
def test_aliases(alias):
    assert get_family(alias).name == "qwen2.5-vl"


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("llava", "llava-1.5"),
        ("llava_next", "llava-next"),
        ("llava-v1.6", "llava-next"),
        ("Qwen3_VL", "qwen3-vl"),
        ("SmolVLM2", "smolvlm"),
    ],
)
def test_other_aliases(alias, name):
    assert get_family(alias).name == name


def test_unknown_family_lists_the_choices():
    with pytest.raises(TokenCountError, match="qwen2.5-vl") as info:
        get_family("gpt-vision")
    assert "gpt-vision" in str(info.value)


def test_overrides():
    family = get_family("qwen2.5-vl", min_pixels=56 * 56, max_pixels=28 * 28 * 256)
    assert isinstance(family, QwenFamily)
    assert family.count(1024, 1024) == 256
    assert get_family("qwen2.5-vl").max_pixels == 1_605_632  # the registry entry is untouched
    with pytest.raises(TypeError, match="max_pixelz"):
        get_family("qwen2.5-vl", max_pixelz=10)
    with pytest.raises(ValueError, match="max_pixels"):
        get_family("qwen2.5-vl", min_pixels=1000, max_pixels=999)
    assert isinstance(get_family("generic", patch=8), GenericFamily)


def test_count_visual_tokens_accepts_images_sizes_and_families():
    image = Image.new("RGB", (448, 448))
    assert count_visual_tokens(image, "qwen2.5-vl") == 256
    assert count_visual_tokens((448, 448), "qwen2_5_vl") == 256
    assert count_visual_tokens([1024, 1024], get_family("qwen2.5-vl", **LOWRES_BUDGET)) == 256
    with pytest.raises(TypeError):
        count_visual_tokens("448x448", "qwen2.5-vl")


# ------------------------------------------------------------------------------------ RTR, report
def test_rtr():
    assert rtr(256, 1024) == 0.25
    assert rtr(0, 10) == 0.0
    assert rtr(1500, 1000) == 1.5  # low-res plus the full image costs more than the full image
    with pytest.raises(ValueError):
        rtr(10, 0)
    with pytest.raises(ValueError):
        rtr(-1, 10)


def test_token_report_qwen25_1024x768():
    report = token_report(1024, 768, "qwen2.5-vl")
    assert isinstance(report, TokenReport)
    assert report.family == "qwen2.5-vl"
    assert report.image_size == (1024, 768)
    assert report.full == 999
    assert report.lowres_size == (512, 384)
    assert report.lowres == 252
    assert report.rtr_lowres == pytest.approx(0.25, abs=0.01)
    assert set(report.crops) == {"0", "1", "2", "3", "4", "5", "6", "7", "8", "all"}
    assert report.crops["all"] == report.full
    assert report.crops["3"] == get_family("qwen2.5-vl").count(512, 384)
    assert report.crops["5"] == get_family("qwen2.5-vl").count(1024, 384)  # top half
    for name, n in report.crops.items():
        assert report.rtr_with_crop[name] == pytest.approx((report.lowres + n) / report.full)
    assert report.rtr_with_crop["all"] > 1.0


def test_token_report_qwen3_is_exactly_a_quarter_and_options_pass_through():
    assert token_report(1024, 768, "qwen3-vl").rtr_lowres == 0.25
    thumb = token_report(2048, 1536, get_family("qwen2.5-vl"), lowres="512px")
    assert thumb.lowres_size == (512, 384)
    assert thumb.lowres == 252
    grid = token_report(1024, 768, "generic", crop_set="grid:2x2")
    assert len(grid.crops) >= 4
    assert sum(n for name, n in grid.crops.items() if name != "all") >= grid.full


def test_token_report_fixed_resolution_family_saves_nothing():
    report = token_report(1024, 768, "llava-1.5")
    assert report.full == report.lowres == 576
    assert report.rtr_lowres == 1.0


def test_token_report_is_json_round_trippable():
    report = token_report(800, 600, "idefics3")
    assert TokenReport.model_validate_json(report.model_dump_json()) == report
