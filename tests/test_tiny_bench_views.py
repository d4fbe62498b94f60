"""The base adaptation's views of benchmark items are what inference shows the model, pixel for pixel."""

from __future__ import annotations

import pytest

from awares_train.bench import BenchConfig, generate_item
from awares_train.tiny.bench_views import (
    REGION_NAMES,
    REQUEST_PREFIX,
    WHERE_PREFIX,
    bench_profile,
    item_views,
    processor_view,
    quarter_answer,
    quarter_example,
    request_example,
    vqa_example,
    where_answer,
    where_example,
)

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


def _items(n: int, **cfg: object) -> list:
    bench = BenchConfig(profile="tiny", seed=5, **cfg)
    return [generate_item(bench, "val", i) for i in range(n)]


def test_views_match_the_processor_and_the_episode() -> None:
    """Each view, patchified by the fast path, equals the tiny processor's pixels of the episode's image."""
    from transformers import AutoTokenizer

    from awares_tool.episode import CropEpisode
    from awares_tool.images.lowres import ScalePolicy
    from awares_tool.protocol import CropRequest
    from awares_train.reproduce.pipeline import default_base
    from awares_train.tiny.batches import patchify
    from awares_train.tiny.model import build_processor

    profile = bench_profile()
    proc = build_processor(AutoTokenizer.from_pretrained(default_base()), max_pixels=profile.max_pixels)
    seen_above_cap = False
    for item, image in _items(6, above_cap_share=0.5):
        views = item_views(item, image, profile)
        episode = CropEpisode(image, lowres=ScalePolicy(factor=0.5), model_max_pixels=profile.max_pixels)
        crops = episode.fetch(CropRequest(regions=item.evidence_regions, form="text", raw="x")).images
        for ours, shown in [(views.low, episode.first_view()), (views.full, image), *zip(views.crops, crops)]:
            ref = proc.image_processor(images=[shown], return_tensors="pt")
            rows, grid = patchify(ours)
            assert tuple(ref["image_grid_thw"][0].tolist()) == grid
            assert torch.equal(ref["pixel_values"], rows)
        assert len(views.crops) == len(item.evidence_regions)
        assert views.full.width * views.full.height <= profile.max_pixels
        seen_above_cap |= item.above_cap
    assert seen_above_cap  # the capped full view was exercised


def test_readability_flags_follow_the_items_digit_heights() -> None:
    profile = bench_profile()
    for item, image in _items(12, lowres_share=0.5):
        views = item_views(item, image, profile)
        assert views.low_readable == (item.digit_px_lowres >= profile.readable_px)
        assert views.full_readable == (item.digit_px_capped >= profile.readable_px)
        assert not (views.full_readable and views.full_unreadable)


def test_examples_ask_the_question_on_the_views_and_where_names_the_evidence_regions() -> None:
    profile = bench_profile()
    pair = next((it, im) for it, im in _items(40, pair_share=1.0) if len(it.evidence_regions) == 2)
    item, image = pair
    views = item_views(item, image, profile)
    crop = vqa_example(views, "crop")
    assert [k for k, _ in crop.conv[0][1]] == ["image", "image", "text"] and len(crop.images) == 2
    assert crop.conv[0][1][-1] == ("text", item.question) and crop.conv[1][1] == [("text", item.answers[0])]
    assert where_answer(item) == " and ".join(REGION_NAMES[r] for r in item.evidence_regions)
    grounding = where_example(views)
    assert grounding.images == [views.low] and grounding.conv[0][1][-1] == ("text", WHERE_PREFIX + item.question)
    with pytest.raises(ValueError, match="unknown view"):
        vqa_example(views, "thumbnail")


def test_quarter_answer_names_the_quarter_of_the_evidence_centre() -> None:
    """Each quarter target of the generator is its own answer; a half or the centre goes by its box's centre."""
    seen = set()
    for item, image in _items(40, lowres_share=0.5, pair_share=0.0):
        (x0, y0, x1, y1), = item.evidence_boxes
        answer = quarter_answer(item)
        if item.evidence_regions[0] in "0123":  # a box inside one quarter: that quarter
            assert answer == REGION_NAMES[item.evidence_regions[0]]
        assert answer.startswith("top" if y0 + y1 < item.height else "bottom")
        assert answer.endswith("left" if x0 + x1 < item.width else "right")
        seen.add(answer)
    assert len(seen) == 4
    views = item_views(item, image, bench_profile())
    grounding = quarter_example(views)
    assert grounding.images == [views.low] and grounding.conv[1][1] == [("text", answer)]


def test_request_example_answers_with_the_tool_call_sft_trains() -> None:
    """The evidence regions (one or two) as the get_crops call: what the parser reads back, and token for token the
    assistant turn the reproduction's SFT renders for that call with the base's own chat template."""
    from transformers import AutoTokenizer

    from awares_tool.protocol import CropRequest, parse_reply
    from awares_train.reproduce.pipeline import default_base
    from awares_train.tiny.batches import ConversationEncoder

    tok = AutoTokenizer.from_pretrained(default_base())
    enc = ConversationEncoder(tok)
    items = _items(6, lowres_share=0.5, pair_share=0.0) + _items(6, lowres_share=0.5, pair_share=1.0)
    assert {len(item.evidence_regions) for item, _ in items} == {1, 2}
    for item, image in items:
        views = item_views(item, image, bench_profile())
        example = request_example(views)
        assert example.images == [views.low]
        assert example.conv[0][1][-1] == ("text", REQUEST_PREFIX + item.question)
        (reply,) = [text for kind, text in example.conv[1][1] if kind == "text"]
        parsed = parse_reply(reply)
        assert isinstance(parsed, CropRequest) and list(parsed.regions) == list(item.evidence_regions)

        ids, labels = enc.encode(example.conv)
        trained = [t for t, lab in zip(ids, labels) if lab != -100]
        call = {"type": "function", "function": {"name": "get_crops",
                                                 "arguments": {"regions": list(item.evidence_regions)}}}
        msgs = [{"role": "user", "content": [{"type": "text", "text": "q"}]}]
        prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template([*msgs, {"role": "assistant", "content": [], "tool_calls": [call]}],
                                       tokenize=False)
        assert full.startswith(prompt)
        assert trained == tok(full[len(prompt):].rstrip("\n"), add_special_tokens=False)["input_ids"]


def test_call_example_is_the_first_turn_sft_renders_for_a_crop_item() -> None:
    """The call example renders, byte for byte, as the reproduction's SFT renders a crop example's first turn
    (its system prompt, the tool list the template adds, the image, the question, the get_crops call)."""
    import yaml
    from transformers import AutoTokenizer

    from awares_train.grpo.env import crop_tool_schemas
    from awares_train.reproduce.pipeline import default_base
    from awares_train.tiny.bench_views import SFT_CONFIG, call_example

    tok = AutoTokenizer.from_pretrained(default_base())
    system = yaml.safe_load(SFT_CONFIG.read_text())["system_prompt"]
    (item, image), = [(i, im) for i, im in _items(8, lowres_share=0.0) if len(i.evidence_regions) == 1][:1]
    views = item_views(item, image, bench_profile())
    assert not views.low_readable
    example = call_example(views)
    assert example.images == [views.low]

    def msgs(conv):
        return [{"role": r, "content": [{"type": "image"} if k == "image" else {"type": "text", "text": v}
                                        for k, v in parts]} for r, parts in conv]

    call = {"type": "function", "function": {"name": "get_crops", "arguments": {"regions": list(item.evidence_regions)}}}
    sft = [{"role": "system", "content": [{"type": "text", "text": system}]},
           {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": item.question}]},
           {"role": "assistant", "content": [], "tool_calls": [call]}]
    ours = tok.apply_chat_template(msgs(example.conv), tokenize=False)
    assert ours == tok.apply_chat_template(sft, tools=crop_tool_schemas(), tokenize=False)


def test_processor_view_keeps_images_already_on_the_grid() -> None:
    from PIL import Image

    img = Image.new("RGB", (224, 112), "white")
    assert processor_view(img, bench_profile()).size == (224, 112)
    assert processor_view(Image.new("RGB", (230, 100), "white"), bench_profile()).size == (224, 112)
