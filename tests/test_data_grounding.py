"""Oracle grounding: data-set boxes, OCR (real Tesseract), VLM boxes, and the box-to-crop mapping."""

import pytest
from PIL import Image, ImageDraw

from awares_tool.backends.scripted import ScriptedBackend
from awares_tool.crops import get_crop_set
from awares_tool.errors import MalformedRequestError
from awares_tool.images import open_image
from awares_train.data.grounding import (
    ChainGrounder,
    DatasetGrounder,
    VLMGrounder,
    get_grounder,
    map_box_to_regions,
    parse_box_reply,
)
from awares_train.data.ocr import OcrWord, find_text_box, tesseract_available
from awares_train.data.records import VQARecord

needs_tesseract = pytest.mark.skipif(not tesseract_available(),
                                     reason="Tesseract not installed: apt-get install -y tesseract-ocr; pip install pytesseract")


def _rec(**kw):
    return VQARecord(**{"id": "r", "image": "x.png", "question": "q", "answers": ["48213"], **kw})


def _words(*items):
    return [OcrWord(text=t, box=b, conf=c) for t, b, c in items]


def test_find_text_box_across_split_and_joined_words():
    words = _words(("Total", (10, 10, 60, 30), 95), ("due:", (65, 10, 100, 30), 90),
                   ("37.", (105, 10, 130, 30), 80), ("50", (131, 10, 150, 30), 85),
                   ("Invoice", (300, 400, 380, 420), 96), ("48213", (390, 400, 450, 420), 92))
    m = find_text_box(words, "37.50")
    assert m.box == (105, 10, 150, 30) and m.words == ["37.", "50"]
    assert find_text_box(words, "Invoice 48213").box == (300, 400, 450, 420)
    assert find_text_box(words, "total due").box == (10, 10, 100, 30)
    assert find_text_box(words, "48218") is None
    fuzzy = find_text_box(words, "48218", min_similarity=0.8)
    assert fuzzy.box == (390, 400, 450, 420) and fuzzy.similarity == pytest.approx(0.8)


def test_find_text_box_prefers_the_confident_duplicate():
    words = _words(("42", (0, 0, 10, 10), 40), ("42", (50, 50, 60, 60), 97))
    m = find_text_box(words, "42")
    assert m.box == (50, 50, 60, 60) and m.candidates == 2


@pytest.mark.parametrize("reply, units, box", [
    ('{"bbox_2d": [500, 500, 1000, 1000], "label": "code"}', "norm1000", (200, 100, 400, 200)),
    ("<|box_start|>(0,0),(250,500)<|box_end|>", "norm1000", (0, 0, 100, 100)),
    ("The box is [10, 20, 30, 40].", "pixels", (10, 20, 30, 40)),
])
def test_parse_box_reply_formats(reply, units, box):
    assert parse_box_reply(reply, units=units, image_size=(400, 200)) == box


def test_parse_box_reply_without_box():
    with pytest.raises(MalformedRequestError, match="no bounding box"):
        parse_box_reply("somewhere on the right", units="norm1000", image_size=(10, 10))


def test_vlm_grounder_through_a_backend_scales_back_from_the_capped_view():
    seen = []

    def reply(messages):
        seen.append(messages[-1].images[0].size)
        return '{"bbox_2d": [750, 750, 1000, 1000]}'

    img = open_image(Image.new("RGB", (800, 600), "white"))
    g = VLMGrounder(ScriptedBackend(reply, token_family=None), max_pixels=120_000)
    found = g.ground(_rec(), img, "48213")
    assert seen[0][0] * seen[0][1] <= 120_000 and seen[0] != (800, 600)
    assert found.method == "vlm" and found.box == (600, 450, 800, 600)
    bad = VLMGrounder(ScriptedBackend(lambda m: "no idea", token_family=None))
    assert bad.ground(_rec(), img, "48213") is None


def test_dataset_grounder_and_chain():
    img = open_image(Image.new("RGB", (100, 100)))
    assert DatasetGrounder().ground(_rec(), img, "a") is None
    g = DatasetGrounder().ground(_rec(evidence_boxes=[(10, 10, 20, 20), (30, 5, 40, 15)]), img, "a")
    assert g.box == (10, 5, 40, 20) and g.method == "dataset"
    vlm = VLMGrounder(ScriptedBackend(lambda m: "[0, 0, 100, 100]", token_family=None))
    chain = ChainGrounder([DatasetGrounder(), vlm])
    assert chain.ground(_rec(), img, "a").method == "vlm"
    assert chain.ground(_rec(evidence_boxes=[(1, 1, 2, 2)]), img, "a").method == "dataset"
    assert get_grounder("dataset,vlm", backend=vlm.backend).name == "dataset,vlm"
    with pytest.raises(ValueError, match="needs a backend"):
        get_grounder("vlm")


def test_map_box_to_regions_rules_and_fallback():
    cs = get_crop_set("awares9")
    small = (300, 300, 340, 320)  # a small code in the bottom-right quarter of a 448 px image
    assert map_box_to_regions(small, cs, 448, 448, rule="cover") == (["3"], False)
    assert map_box_to_regions(small, cs, 448, 448, rule="iou") == (["all"], True)  # paper's IoU >= 0.5
    assert map_box_to_regions((0, 0, 224, 200), cs, 448, 448, rule="iou") == (["0"], False)
    assert map_box_to_regions((0, 0, 230, 220), cs, 448, 448, rule="iou") == (["0", "5"], False)
    assert map_box_to_regions((200, 300, 260, 320), cs, 448, 448, rule="cover") == (["4"], False)
    across = (200, 380, 260, 420)  # straddles the vertical midline, below the center region
    assert map_box_to_regions(across, cs, 448, 448, rule="cover") == (["6"], False)


def _document(lines):
    img = Image.new("RGB", (1000, 700), (250, 250, 245))
    draw = ImageDraw.Draw(img)
    from awares_train.data.synthetic import load_font

    for (x, y), text in lines:
        draw.text((x, y), text, font=load_font(22), fill=(20, 20, 20))
    return img


@needs_tesseract
def test_ocr_grounder_on_a_rendered_page():
    img = _document([((60, 60), "Total due: 37.50"), ((700, 600), "Invoice 48213")])
    found = get_grounder("ocr").ground(_rec(), open_image(img), "48213")
    assert found.method == "ocr"
    l, t, r, b = found.box
    assert 780 <= l and r <= 900 and 595 <= t and b <= 630  # the number, not the word "Invoice"
    assert map_box_to_regions(found.box, get_crop_set("awares9"), 1000, 700) == (["3"], False)


@needs_tesseract
@pytest.mark.slow  # about 2-8 s of Tesseract per image on a busy 2-core machine
def test_ocr_grounding_finds_the_code_on_generated_images():
    from awares_train.data.synthetic import SyntheticConfig, generate_sample

    grounder = get_grounder("ocr")
    hits, n = 0, 0
    for cfg in (SyntheticConfig(), SyntheticConfig(width=1024, height=768, font_size_range=(14, 28))):
        for i in range(12):
            s = generate_sample(i, cfg, kind="code")
            found = grounder.ground(_rec(answers=s.answers), open_image(s.image), s.answers[0])
            n += 1
            if found is None:
                continue
            l, t, r, b = found.box
            el, et, er, eb = s.evidence_box
            hits += el <= l and et <= t and r <= er and b <= eb  # inside the code's white box
    assert hits / n >= 0.9, f"OCR grounding found {hits}/{n} codes"


def test_two_pieces_of_evidence_map_to_their_own_crops_not_their_union():
    """Codes in opposite corners need quarters 0 and 3; their union box would map to the two halves."""
    from awares_tool.crops import get_crop_set
    from awares_train.data.grounding import DatasetGrounder, map_grounding_to_regions

    rec = VQARecord(id="pair", source="bench", question="q", answers=["1"], image="x.png",
                    evidence_boxes=[(20, 20, 120, 60), (880, 700, 980, 740)])
    found = DatasetGrounder().ground(rec, None, "1")  # type: ignore[arg-type]
    assert found.box == (20, 20, 980, 740) and len(found.parts) == 2
    regions, fell_back = map_grounding_to_regions(found, get_crop_set("awares9"), 1000, 800)
    assert regions == ["0", "3"] and not fell_back
