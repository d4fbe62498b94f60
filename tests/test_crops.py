"""Crop-set geometry, lookup, user-defined sets and the evidence-box mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awares_tool.crops import (
    FULL_IMAGE,
    CropSet,
    GridCropSet,
    NormalizedCropSet,
    Region,
    coverage,
    get_crop_set,
    iou,
    load_crop_set,
    regions_for_box,
    snap_box,
)
from awares_tool.errors import CropSetError, UnknownRegionError

AWARES9_NAMES = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "all"]


def official_box(name: str, w: int, h: int) -> tuple[int, int, int, int]:
    """The official evaluation code's formulas, written out literally as the reference."""
    if w < 100 or h < 100 or name == "all":
        return (0, 0, w, h)
    cw, ch = max(100, w // 2), max(100, h // 2)
    return {
        "0": (0, 0, cw, ch),
        "1": (w - cw, 0, w, ch),
        "2": (0, h - ch, cw, h),
        "3": (w - cw, h - ch, w, h),
        "4": ((w - cw) // 2, (h - ch) // 2, (w + cw) // 2, (h + ch) // 2),
        "5": (0, 0, w, ch),
        "6": (0, h - ch, w, h),
        "7": (0, 0, cw, h),
        "8": (w - cw, 0, w, h),
    }[name]


def assert_inside_and_nonempty(box, w, h):
    left, top, right, bottom = box
    assert 0 <= left < right <= w and 0 <= top < bottom <= h, (box, w, h)


# --- awares9 ----------------------------------------------------------------------------------------

SIZES = [
    (1, 1), (99, 500), (500, 99), (100, 100), (101, 101), (150, 150), (199, 1000), (200, 200),
    (201, 333), (640, 480), (1023, 767), (20000, 50), (50, 20000), (20000, 150), (3001, 2999),
]


@pytest.mark.parametrize(("w", "h"), SIZES)
def test_awares9_matches_official_formulas(w, h):
    cs = get_crop_set("awares9")
    for name in AWARES9_NAMES:
        box = cs.box(name, w, h)
        assert box == official_box(name, w, h)
        assert_inside_and_nonempty(box, w, h)


@settings(max_examples=300, deadline=None)
@given(w=st.integers(1, 5000), h=st.integers(1, 5000))
def test_awares9_matches_official_formulas_property(w, h):
    boxes = get_crop_set().boxes(w, h)
    assert list(boxes) == AWARES9_NAMES
    for name, box in boxes.items():
        assert box == official_box(name, w, h)
        assert_inside_and_nonempty(box, w, h)


def test_awares9_known_values():
    cs = get_crop_set()
    assert cs.box("0", 640, 480) == (0, 0, 320, 240)
    assert cs.box("4", 640, 480) == (160, 120, 480, 360)
    # 100 <= W < 200: the 100 px minimum wins over W // 2, literally as in the official code.
    assert cs.box("1", 150, 150) == (50, 0, 150, 100)
    assert cs.box("4", 151, 151) == (25, 25, 125, 125)
    # Under 100 px on either side, every region is the full image.
    assert cs.box("0", 99, 500) == (0, 0, 99, 500)


def test_awares9_describe_and_names():
    cs = get_crop_set()
    assert cs.name == "awares9"
    assert cs.region_names() == AWARES9_NAMES
    lines = cs.describe().splitlines()
    assert lines[0] == "- `0`: top-left quarter"
    assert lines[4] == "- `4`: center"
    assert lines[-1] == "- `all`: the whole image at full resolution"
    assert cs.has("3") and not cs.has("9") and not cs.has(3)


def test_unknown_region_lists_valid_names():
    with pytest.raises(UnknownRegionError, match=r"'9'.*awares9.*'0'.*'all'"):
        get_crop_set().box("9", 100, 100)


@pytest.mark.parametrize("size", [(0, 10), (10, -1), (10.0, 10), (True, 10)])
def test_bad_image_size_is_value_error(size):
    with pytest.raises(ValueError, match="positive int"):
        get_crop_set().box("0", *size)


# --- readme -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("w", "h"), [(2, 2), (7, 5), (150, 150), (640, 480), (1001, 77)])
def test_readme_geometry(w, h):
    cs = get_crop_set("readme")
    cw, ch = w // 2, h // 2
    assert cs.box("0", w, h) == (0, 0, cw, ch)
    assert cs.box("3", w, h) == (w - cw, h - ch, w, h)
    assert cs.box("4", w, h) == (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    assert cs.box("5", w, h) == (0, 0, w, ch)
    assert cs.box("8", w, h) == (w - cw, 0, w, h)
    assert cs.box("all", w, h) == (0, 0, w, h)


@given(w=st.integers(1, 3000), h=st.integers(1, 3000))
def test_readme_boxes_inside_and_nonempty(w, h):
    for box in get_crop_set("readme").boxes(w, h).values():
        assert_inside_and_nonempty(box, w, h)


# --- grids ------------------------------------------------------------------------------------------


def test_grid_names_and_descriptions():
    cs = get_crop_set("grid:3x3")
    assert cs.region_names() == [f"r{r}c{c}" for r in range(3) for c in range(3)] + ["all"]
    regions = {r.name: r.description for r in cs.regions}
    assert regions["r0c1"] == "row 1 of 3, column 2 of 3 (top-middle)"
    assert regions["r1c1"] == "row 2 of 3, column 2 of 3 (center)"
    assert regions["r2c0"] == "row 3 of 3, column 1 of 3 (bottom-left)"
    assert get_crop_set("grid:1x2").regions[1].description == "row 1 of 1, column 2 of 2 (right)"
    assert "(" not in get_crop_set("grid:5x5").regions[0].description


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 6), w=st.integers(1, 2000), h=st.integers(1, 2000))
def test_grid_tiles_exactly(rows, cols, w, h):
    boxes = GridCropSet(rows, cols).boxes(w, h)
    assert boxes.pop("all") == (0, 0, w, h)
    for box in boxes.values():
        assert_inside_and_nonempty(box, w, h)
    if w >= cols and h >= rows:
        assert sum((r - l) * (b - t) for l, t, r, b in boxes.values()) == w * h
        # no overlap: every pair of cells is disjoint
        vals = list(boxes.values())
        for i, a in enumerate(vals):
            for b in vals[i + 1 :]:
                assert iou(a, b) == 0.0


def test_grid_overlap_grows_and_clips():
    plain, grown = get_crop_set("grid:2x2").boxes(200, 100), get_crop_set("grid:2x2+0.1").boxes(200, 100)
    assert plain["r0c0"] == (0, 0, 100, 50)
    assert grown["r0c0"] == (0, 0, 110, 55)  # clipped at the image edge, grown 10% inward
    assert grown["r1c1"] == (90, 45, 200, 100)
    assert get_crop_set("grid:2x2+1").box("r0c0", 200, 100) == (0, 0, 200, 100)


@given(w=st.integers(1, 1500), h=st.integers(1, 1500), ov=st.floats(0, 1))
def test_grid_overlap_boxes_inside(w, h, ov):
    for box in GridCropSet(3, 4, ov).boxes(w, h).values():
        assert_inside_and_nonempty(box, w, h)


# --- lookup -----------------------------------------------------------------------------------------


def test_get_crop_set_defaults_and_cache():
    assert get_crop_set() is get_crop_set("awares9") is get_crop_set(" AWARES9 ")
    assert get_crop_set("grid:3x3") is get_crop_set("grid:3x3")
    assert get_crop_set("grid:3x3+0.1").name == "grid:3x3+0.1"
    cs = get_crop_set("readme")
    assert get_crop_set(cs) is cs


@pytest.mark.parametrize("spec", ["awares10", "grid:3", "grid:0x3", "grid:17x1", "grid:2x2+1.5", ""])
def test_bad_spec_lists_valid_forms(spec):
    with pytest.raises(CropSetError, match="awares9|grid"):
        get_crop_set(spec)


# --- user-defined sets ------------------------------------------------------------------------------

SPEC = {
    "name": "strips",
    "regions": [
        {"name": "top", "box": [0, 0, 1, 0.3], "description": "top strip"},
        {"name": "bottom", "box": [0, 0.7, 1, 1]},
    ],
    "include_full": True,
}


def test_normalized_set_in_python():
    cs = NormalizedCropSet("third", {"a": (0, 0, 1 / 3, 1), "b": (1 / 3, 0, 2 / 3, 1)}, {"a": "left third"})
    assert cs.region_names() == ["a", "b", "all"]
    assert cs.box("a", 10, 10) == (0, 0, 4, 10)  # floor/ceil: never loses a pixel
    assert cs.box("b", 9, 10) == (3, 0, 6, 10)  # exact thirds stay exact despite float noise
    assert cs.box("a", 1, 1) == (0, 0, 1, 1)
    assert cs.describe().splitlines()[0] == "- `a`: left third"
    assert "33%" in cs.describe().splitlines()[1]


@given(
    x0=st.floats(0, 0.99), dx=st.floats(1e-6, 1), y0=st.floats(0, 0.99), dy=st.floats(1e-6, 1),
    w=st.integers(1, 4000), h=st.integers(1, 4000),
)
def test_normalized_boxes_never_empty(x0, dx, y0, dy, w, h):
    cs = NormalizedCropSet("p", {"r": (x0, y0, min(1.0, x0 + dx), min(1.0, y0 + dy))})
    assert_inside_and_nonempty(cs.box("r", w, h), w, h)


def test_normalized_min_side():
    cs = NormalizedCropSet("m", {"r": (0.5, 0.5, 1, 1)}, min_side=64)
    assert cs.box("r", 63, 500) == (0, 0, 63, 500)
    assert cs.box("r", 64, 64) == (32, 32, 64, 64)


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_load_from_file(tmp_path: Path, suffix):
    import yaml

    path = tmp_path / f"my_set{suffix}"
    path.write_text(json.dumps(SPEC) if suffix == ".json" else yaml.safe_dump(SPEC))
    cs = get_crop_set(str(path))
    assert cs.name == "strips"
    assert cs.region_names() == ["top", "bottom", "all"]
    assert cs.box("bottom", 100, 100) == (0, 70, 100, 100)
    assert cs.box("all", 100, 100) == (0, 0, 100, 100)
    assert get_crop_set(path).region_names() == cs.region_names()  # os.PathLike too


def test_file_round_trip_and_default_name(tmp_path: Path):
    spec = dict(SPEC, include_full=False)
    del spec["name"]
    path = tmp_path / "unnamed.json"
    path.write_text(json.dumps(spec))
    cs = load_crop_set(path)
    assert cs.name == "unnamed" and not cs.has(FULL_IMAGE)
    assert cs.to_spec().regions[0].box == (0.0, 0.0, 1.0, 0.3)
    with pytest.raises(UnknownRegionError):
        cs.box("all", 10, 10)


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        ([{"name": "bad", "box": [0.5, 0, 0.2, 1]}], r"region 'bad'.*0 <= x0 < x1 <= 1"),
        ([{"name": "big", "box": [0, 0, 1.5, 1]}], r"region 'big'"),
        ([{"name": "all", "box": [0, 0, 1, 1]}], r"reserved"),
        ([{"name": "a", "box": [0, 0, 1, 1]}, {"name": "a", "box": [0, 0, 1, 1]}], r"duplicate.*'a'"),
        ([{"name": "a", "box": [0, 0, 1]}], r"schema"),
        ([], r"schema"),
        ([{"name": "a", "box": [0, 0, 1, 1], "colour": "red"}], r"schema"),
    ],
)
def test_file_errors_name_file_and_region(tmp_path: Path, regions, message):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"name": "x", "regions": regions}))
    with pytest.raises(CropSetError, match=message) as info:
        get_crop_set(str(path))
    assert "broken.json" in str(info.value)


def test_file_missing_or_unparsable(tmp_path: Path):
    with pytest.raises(CropSetError, match="cannot read.*nope.yaml"):
        get_crop_set(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("regions: [unclosed")
    with pytest.raises(CropSetError, match="bad.yaml.*not valid YAML"):
        get_crop_set(str(bad))


def test_custom_crop_set_subclass():
    class Halves(CropSet):
        name = "lr"

        @property
        def regions(self):
            return (Region(name="L", description="left"), Region(name="R", description="right"))

        def _region_box(self, name, width, height):
            return (0, 0, width // 2, height) if name == "L" else (width // 2, 0, width, height)

    cs = get_crop_set(Halves())
    assert cs.boxes(10, 4) == {"L": (0, 0, 5, 4), "R": (5, 0, 10, 4)}
    assert cs.describe() == "- `L`: left\n- `R`: right"
    with pytest.raises(UnknownRegionError, match="'L', 'R'"):
        cs.box("all", 10, 4)


# --- geometry helpers and evidence mapping ----------------------------------------------------------


def test_iou_and_coverage():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
    assert coverage((0, 0, 10, 10), (0, 0, 5, 100)) == 0.5
    assert coverage((0, 0, 0, 10), (0, 0, 5, 100)) == 0.0


W, H = 640, 480


def test_cover_rule_single_and_half():
    cs = get_crop_set()
    assert regions_for_box((10, 10, 100, 100), cs, W, H, rule="cover") == ["0"]
    # spans the top half horizontally: only "5" holds all of it
    assert regions_for_box((64, 48, 576, 200), cs, W, H, rule="cover") == ["5"]
    # a centred box: "4" covers it, and is smaller than any half
    assert regions_for_box((200, 150, 440, 330), cs, W, H, rule="cover") == ["4"]


def test_cover_rule_pairs_and_partial_threshold():
    cs = get_crop_set("grid:3x3")
    # straddles the r0c1/r1c1 border
    assert regions_for_box((250, 150, 350, 250), cs, 600, 600, rule="cover") == ["r0c1", "r1c1"]
    # 75% of it lies in r1c1, so a 0.7 threshold needs one region only
    assert regions_for_box((250, 175, 350, 275), cs, 600, 600, rule="cover", threshold=0.7) == ["r1c1"]
    # four cells around the centre point
    assert regions_for_box((150, 150, 250, 250), cs, 600, 600, rule="cover") == [
        "r0c0", "r0c1", "r1c0", "r1c1",
    ]
    assert regions_for_box((150, 150, 250, 250), cs, 600, 600, rule="cover", max_regions=3) == []


def test_cover_rule_prefers_smaller_area_on_ties():
    # both "a" and "b" cover the box fully; "b" is smaller even though it comes later
    cs = NormalizedCropSet("t", {"a": (0, 0, 1, 1), "b": (0, 0, 0.5, 0.5), "c": (0, 0, 0.5, 0.5)})
    assert regions_for_box((0, 0, 10, 10), cs, 100, 100, rule="cover") == ["b"]


def test_iou_rule_thresholds():
    cs = get_crop_set()
    # exactly the top half: quarters 0 and 1 have IoU 0.5 with it, "5" has 1.0
    assert regions_for_box((0, 0, W, H // 2), cs, W, H) == ["0", "1", "5"]
    assert regions_for_box((0, 0, W, H // 2), cs, W, H, threshold=0.6) == ["5"]
    assert regions_for_box((0, 0, W // 2, H // 2), cs, W, H, threshold=1.0) == ["0"]


def test_none_qualifies_returns_empty():
    cs = get_crop_set()
    tiny = (315, 235, 325, 245)  # a small box on the centre lines: IoU with everything is tiny
    assert regions_for_box(tiny, cs, W, H) == []
    assert regions_for_box((700, 500, 800, 600), cs, W, H, rule="cover") == []  # outside the image


def test_regions_for_box_validates_arguments():
    with pytest.raises(ValueError, match="rule"):
        regions_for_box((0, 0, 1, 1), get_crop_set(), W, H, rule="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        regions_for_box((0, 0, 1, 1), get_crop_set(), W, H, threshold=0)


def test_snap_box():
    cs = get_crop_set()
    assert snap_box((0, 0, 300, 220), cs, W, H) == "0"
    assert snap_box((0, 0, W, 250), cs, W, H) == "5"
    assert snap_box((0, 0, W, H), cs, W, H) in {"5", "6", "7", "8"}  # best without "all"
    assert snap_box((0, 0, W, H), cs, W, H, include_full=True) == "all"
    assert snap_box((1000, 1000, 1100, 1100), cs, W, H) == "all"  # overlaps nothing


@settings(max_examples=150, deadline=None)
@given(
    w=st.integers(100, 3000), h=st.integers(100, 3000),
    fx=st.tuples(st.floats(0, 1), st.floats(0, 1)), fy=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_cover_result_really_covers(w, h, fx, fy):
    x0, x1 = sorted(round(f * w) for f in fx)
    y0, y1 = sorted(round(f * h) for f in fy)
    if x1 == x0 or y1 == y0:
        return
    box = (x0, y0, x1, y1)
    cs = get_crop_set()
    names = regions_for_box(box, cs, w, h, rule="cover")
    if not names:
        return
    # every pixel of the box lies in some chosen region (checked on a coarse lattice of points)
    chosen = [cs.box(n, w, h) for n in names]
    for px in range(x0, x1, max(1, (x1 - x0) // 7)):
        for py in range(y0, y1, max(1, (y1 - y0) // 7)):
            assert any(b[0] <= px < b[2] and b[1] <= py < b[3] for b in chosen)
    # and no single region would have done when two were chosen
    if len(names) > 1:
        assert all(coverage(box, b) < 1.0 for b in cs.boxes(w, h).values() if b != (0, 0, w, h))
