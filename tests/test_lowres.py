"""Low-res policies: parsing, sizes, the view itself and the pixel cap."""

from __future__ import annotations

import io
import math
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from awares_tool.errors import TokenCountError
from awares_tool.images.lowres import (
    LongestSidePolicy,
    ScalePolicy,
    TokenBudgetPolicy,
    cap_pixels,
    lowres_size,
    make_lowres_view,
    parse_lowres,
)

# --- parsing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, ScalePolicy(factor=0.5)),
        (0.5, ScalePolicy(factor=0.5)),
        ("0.5", ScalePolicy(factor=0.5)),
        ("scale:0.25", ScalePolicy(factor=0.25)),
        (1, ScalePolicy(factor=1.0)),
        (512, LongestSidePolicy(size=512)),
        (512.0, LongestSidePolicy(size=512)),
        ("512px", LongestSidePolicy(size=512)),
        ("side:768", LongestSidePolicy(size=768)),
        (" SIDE:768px ", LongestSidePolicy(size=768)),
        ("tokens:qwen2.5-vl:256", TokenBudgetPolicy(family="qwen2.5-vl", max_tokens=256)),
        ({"kind": "longest_side", "size": 300}, LongestSidePolicy(size=300)),
        (
            {"kind": "token_budget", "family": "llava", "max_tokens": 9},
            TokenBudgetPolicy(family="llava", max_tokens=9),
        ),
    ],
)
def test_parse_lowres_forms(spec, expected):
    assert parse_lowres(spec) == expected


def test_parse_lowres_passes_policies_through():
    p = LongestSidePolicy(size=99)
    assert parse_lowres(p) is p


@pytest.mark.parametrize(
    "spec",
    [0, -0.5, 1.5, 2.5, "big", "scale:2", "scale:0", "side:0", "tokens:qwen", "tokens::5", True, {"kind": "x"}, [1]],
)
def test_parse_lowres_rejects_with_accepted_forms(spec):
    with pytest.raises(ValueError, match="accepted forms"):
        parse_lowres(spec)


# --- sizes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("w", "h"), [(1, 1), (3, 7), (640, 480), (1001, 999), (20000, 50)])
def test_scale_half_matches_official_halving(w, h):
    assert lowres_size(None, w, h) == (max(1, w // 2), max(1, h // 2))


@given(w=st.integers(1, 10**5), h=st.integers(1, 10**5))
def test_scale_half_property(w, h):
    assert lowres_size(0.5, w, h) == (max(1, w // 2), max(1, h // 2))


def test_scale_factors():
    assert lowres_size("scale:0.25", 1000, 600) == (250, 150)
    assert lowres_size(1, 1000, 600) == (1000, 600)
    assert lowres_size(0.1, 5, 5) == (1, 1)


def test_longest_side():
    assert lowres_size(512, 2048, 1024) == (512, 256)
    assert lowres_size(512, 1000, 3000) == (171, 512)
    assert lowres_size(512, 400, 300) == (400, 300)  # never upscaled
    assert lowres_size(512, 512, 10) == (512, 10)
    assert lowres_size(512, 10000, 1) == (512, 1)


@given(w=st.integers(1, 20000), h=st.integers(1, 20000), size=st.integers(1, 4096))
def test_longest_side_property(w, h, size):
    lw, lh = lowres_size(LongestSidePolicy(size=size), w, h)
    if max(w, h) <= size:
        assert (lw, lh) == (w, h)
    else:
        assert max(lw, lh) == size and min(lw, lh) >= 1
        # aspect ratio kept to within rounding of the shorter side
        assert abs(lw / lh - w / h) <= (w / h) / min(lw, lh) + 1e-9 or min(lw, lh) == 1


class FakeFamily:
    """One token per 10x10 block, rounded up: monotone and easy to reason about."""

    def __init__(self):
        self.calls = 0

    def count(self, width: int, height: int) -> int:
        self.calls += 1
        return math.ceil(width / 10) * math.ceil(height / 10)


@pytest.fixture
def fake_family(monkeypatch):
    import awares_tool.images.lowres as lowres

    fam = FakeFamily()
    monkeypatch.setattr(lowres, "get_family", lambda name: fam)
    return fam


def test_token_budget_largest_fitting_size(fake_family):
    policy = TokenBudgetPolicy(family="fake", max_tokens=100)
    w, h = lowres_size(policy, 2000, 1000)
    assert fake_family.count(w, h) <= 100
    assert (w, h) == (140, 70)  # 14 x 7 blocks = 98; at 141 px the long side needs a 15th block
    assert fake_family.count(141, 71) > 100
    assert fake_family.calls < 40  # binary search, not a scan


def test_token_budget_keeps_small_images(fake_family):
    assert lowres_size(TokenBudgetPolicy(family="fake", max_tokens=100), 90, 90) == (90, 90)


@given(w=st.integers(1, 8000), h=st.integers(1, 8000), budget=st.integers(1, 2000))
@settings(deadline=None)
def test_token_budget_property(w, h, budget):
    with mock.patch("awares_tool.images.lowres.get_family", lambda name: FakeFamily()):
        lw, lh = lowres_size(TokenBudgetPolicy(family="fake", max_tokens=budget), w, h)
    count = FakeFamily().count(lw, lh)
    assert count <= budget
    assert lw <= w and lh <= h
    if (lw, lh) != (w, h):  # one pixel more on the long side would break the budget
        longer = max(lw, lh) + 1
        if w >= h:
            bigger = (longer, max(1, (h * longer + w // 2) // w))
        else:
            bigger = (max(1, (w * longer + h // 2) // h), longer)
        assert FakeFamily().count(*bigger) > budget


def test_token_budget_impossible(monkeypatch):
    import awares_tool.images.lowres as tokens

    class Floor:
        def count(self, width, height):
            return 64  # like a processor with a min_pixels floor

    monkeypatch.setattr(tokens, "get_family", lambda name: Floor())
    with pytest.raises(TokenCountError, match="raise max_tokens"):
        lowres_size(TokenBudgetPolicy(family="floor", max_tokens=10), 1000, 1000)


def test_token_budget_with_real_qwen_family():
    from awares_tool.tokens import get_family

    fam = get_family("qwen2.5-vl")
    w, h = lowres_size("tokens:qwen2.5-vl:256", 3000, 2000)
    assert fam.count(w, h) <= 256
    assert fam.count(3000, 2000) > 256
    assert abs(w / h - 1.5) < 0.02


# --- the view ---------------------------------------------------------------------------------------


def test_make_lowres_view_pil():
    img = Image.new("L", (101, 51), 128)
    view = make_lowres_view(img)
    assert view.mode == "RGB" and view.size == (50, 25)
    assert view.getpixel((10, 10)) == (128, 128, 128)
    same = make_lowres_view(Image.new("RGB", (300, 200)), "512px")
    assert same.size == (300, 200)


def test_make_lowres_view_flattens_transparency_on_white():
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    assert make_lowres_view(img, 0.5).getpixel((5, 5)) == (255, 255, 255)


def test_make_lowres_view_uses_resized_when_available():
    class Src:
        size = (1000, 500)

        def __init__(self):
            self.asked = None

        def resized(self, size):
            self.asked = size
            return Image.new("RGB", size, (1, 2, 3))

    src = Src()
    view = make_lowres_view(src, 250)
    assert src.asked == (250, 125) and view.size == (250, 125)


def test_make_lowres_view_with_source_image():
    from awares_tool.images import open_image

    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 200, 30)).save(buf, "JPEG")
    view = make_lowres_view(open_image(buf.getvalue()))
    assert view.size == (320, 240) and view.mode == "RGB"


# --- pixel cap --------------------------------------------------------------------------------------


def test_cap_pixels_unchanged_when_within():
    img = Image.new("RGB", (100, 100))
    assert cap_pixels(img, max_pixels=10_000) is img


def test_cap_pixels_multiple_of_28():
    out = cap_pixels(Image.new("RGB", (4000, 3000)), max_pixels=1_605_632, multiple=28)
    w, h = out.size
    assert w % 28 == 0 and h % 28 == 0 and w * h <= 1_605_632
    assert abs(w / h - 4 / 3) < 0.05


def test_cap_pixels_rejects_impossible():
    with pytest.raises(ValueError, match="multiple"):
        cap_pixels(Image.new("RGB", (100, 100)), max_pixels=500, multiple=28)


@settings(max_examples=150, deadline=None)
@given(
    w=st.integers(1, 6000), h=st.integers(1, 6000),
    max_pixels=st.integers(1, 4_000_000), multiple=st.sampled_from([1, 2, 14, 28, 32]),
)
def test_cap_pixels_property(w, h, max_pixels, multiple):
    if multiple * multiple > max_pixels:
        return
    img = Image.new("1", (w, h))  # 1-bit images keep the resize cheap
    out = cap_pixels(img, max_pixels=max_pixels, multiple=multiple)
    if w * h <= max_pixels:
        assert out is img
        return
    ow, oh = out.size
    assert ow * oh <= max_pixels
    assert ow % multiple == 0 and oh % multiple == 0
    assert ow >= multiple and oh >= multiple
    assert ow <= max(w, multiple) and oh <= max(h, multiple)
