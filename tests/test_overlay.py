"""Overlay drawing: size and mode kept, highlighted regions in their own colour, robust at any size."""

from __future__ import annotations

import pytest
from PIL import Image

from awares_tool.crops import get_crop_set
from awares_tool.errors import UnknownRegionError
from awares_tool.crops.overlay import HIGHLIGHT_COLOR, draw_overlay, save_overlay

GREY = (128, 128, 128)


def _redness(px):
    r, g, b = px
    return r - (g + b) / 2


@pytest.mark.parametrize("size", [(1, 1), (50, 50), (99, 500), (640, 480), (20000, 50)])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_returns_rgb_of_input_size(size, mode):
    img = Image.new(mode, size)
    out = draw_overlay(img, highlight=["0"], title="question?")
    assert out.mode == "RGB" and out.size == size
    assert out is not img


def test_input_not_modified():
    img = Image.new("RGB", (300, 200), GREY)
    draw_overlay(img, highlight=["3"], title="t")
    assert img.getcolors() == [(300 * 200, GREY)]


def test_highlighted_region_has_distinct_colour():
    img = Image.new("RGB", (800, 600), GREY)
    out = draw_overlay(img, regions=["0", "3"], highlight=["3"])
    cs = get_crop_set()
    l0, t0, r0, b0 = cs.box("0", 800, 600)
    l3, t3, r3, b3 = cs.box("3", 800, 600)
    # interior points away from labels (centres) and outlines
    plain_px = out.getpixel((l0 + 30, t0 + 30))
    marked_px = out.getpixel((l3 + 30, t3 + 30))
    assert plain_px != GREY and marked_px != GREY
    assert plain_px != marked_px
    assert _redness(marked_px) > 20 and _redness(marked_px) > _redness(plain_px) + 20
    # the highlight outline is the pure highlight colour
    assert out.getpixel((l3 + 1, (t3 + b3) // 2)) == HIGHLIGHT_COLOR
    # pixels in no drawn region are untouched: regions 0 and 3 leave the top-right quarter free
    assert out.getpixel((700, 100)) == GREY


def test_default_draws_every_region_but_all():
    img = Image.new("RGB", (400, 400), GREY)
    out = draw_overlay(img, "grid:2x2")
    # each cell's interior is tinted differently (palette colours by menu order)
    colours = {out.getpixel((x, y)) for x, y in [(20, 20), (380, 20), (20, 380), (380, 380)]}
    assert len(colours) == 4 and GREY not in colours


def test_title_bar_darkens_top():
    img = Image.new("RGB", (400, 300), (255, 255, 255))
    out = draw_overlay(img, regions=[], title="Where is the cat?")
    assert sum(out.getpixel((399, 2))) < 300  # dark bar across the top, right of the text
    assert out.getpixel((200, 290)) == (255, 255, 255)  # nothing else drawn


def test_labels_are_drawn():
    img = Image.new("RGB", (400, 400), GREY)
    with_labels = draw_overlay(img, "grid:2x2")
    # the label tag sits on each cell centre, in the cell's colour at near-full opacity
    centre = with_labels.getpixel((100, 100))
    interior = with_labels.getpixel((20, 20))
    assert centre != interior


def test_unknown_region_raises():
    with pytest.raises(UnknownRegionError):
        draw_overlay(Image.new("RGB", (200, 200)), regions=["nine"])
    with pytest.raises(UnknownRegionError):
        draw_overlay(Image.new("RGB", (200, 200)), highlight=["nine"])


def test_save_overlay(tmp_path):
    path = save_overlay(Image.new("RGB", (120, 90), GREY), tmp_path / "ov.png", "readme", highlight=["all"])
    with Image.open(path) as saved:
        assert saved.size == (120, 90)
        assert saved.getpixel((1, 45)) == HIGHLIGHT_COLOR  # "all" outlines the whole image


def test_accepts_source_image():
    from awares_tool.images import open_image

    out = draw_overlay(open_image(Image.new("RGB", (300, 300), GREY)), highlight=["4"])
    assert out.size == (300, 300)
