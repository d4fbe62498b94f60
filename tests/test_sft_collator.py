"""The SFT collator: images in several turns, labels on EXACTLY the assistant tokens, tool-turn weights.

One test per family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL with the native tool-call format; Idefics3 with the
text format, since its template has no tool support), on tiny random models built offline.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")

from awares_train.sft.collator import TrajectoryCollator, span_runs, to_conversation  # noqa: E402
from awares_train.sft.data import read_records  # noqa: E402
from awares_train.sft.toydata import write_toy_trajectories  # noqa: E402


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    crop = read_records(write_toy_trajectories(tmp_path_factory.mktemp("crop"), 1, crop_share=1.0))
    direct = read_records(write_toy_trajectories(tmp_path_factory.mktemp("direct"), 1, crop_share=0.0, seed=3))
    return crop + direct


def _collator(family: str, fmt: str):
    from awares_tool.backends.hf_processors import load_processor
    from awares_train.grpo.env import crop_tool_schemas
    from awares_train.testing.tiny_vlms import tiny_vlm_path

    proc = load_processor(str(tiny_vlm_path(family)))
    tools = crop_tool_schemas() if fmt == "tool" else None
    return proc, TrajectoryCollator(proc, request_format=fmt, tools=tools, system_prompt="Answer or crop.",
                                    tool_turn_weight=5.0)


EXPECTED = {
    "tool": ('<tool_call>\n{{"name": "get_crops", "arguments": {{"regions": ["{r}"]}}}}\n</tool_call><|im_end|>\n',
             "{a}<|im_end|>\n"),
    "text": (" GET_CROPS: ['{r}']<end_of_utterance>\n", " {a}<end_of_utterance>\n"),
}


@pytest.mark.parametrize("family,fmt", [("qwen2-vl", "tool"), ("qwen2.5-vl", "tool"), ("qwen3-vl", "tool"),
                                        ("idefics3", "text")])
def test_labels_cover_exactly_assistant_tokens(rows, family, fmt):
    proc, col = _collator(family, fmt)
    batch = col(rows)
    tok = proc.tokenizer
    crop_row, direct_row = rows
    region, answer = crop_row["target_regions"][0], crop_row["answers"][0]
    req_tpl, ans_tpl = EXPECTED[fmt]
    labels, weights = batch["labels"], batch["loss_weights"]
    # Row 0: request turn + answer turn, both and only them.
    ids0 = labels[0][labels[0] != -100]
    assert tok.decode(ids0) == req_tpl.format(r=region) + ans_tpl.format(a=answer)
    runs = span_runs((labels[0] != -100).int().tolist())
    assert len(runs) == 2
    (s0, e0), (s1, e1) = runs
    assert tok.decode(batch["input_ids"][0][s0:e0]) == req_tpl.format(r=region)
    assert set(weights[0][s0:e0].tolist()) == {5.0} and set(weights[0][s1:e1].tolist()) == {1.0}
    assert float(weights[0].sum()) == 5.0 * (e0 - s0) + (e1 - s1)  # zero everywhere else
    # Row 1 (direct): only the answer, weight 1; padding never labelled.
    assert tok.decode(labels[1][labels[1] != -100]) == ans_tpl.format(a=direct_row["answers"][0])
    assert not bool(((labels != -100) & (batch["attention_mask"] == 0)).any())
    # Images of both turns reach the batch, none of their tokens is a target.
    image_id = getattr(proc, "image_token_id", None) or tok.convert_tokens_to_ids(getattr(proc, "image_token", "<image>"))
    assert int((batch["input_ids"][0] == image_id).sum()) > int((batch["input_ids"][1] == image_id).sum()) > 0
    assert not bool((labels == image_id).any())
    if family.startswith("qwen"):
        assert batch["image_grid_thw"].shape[0] == 3  # low-res + crop for row 0, low-res for row 1
        assert "mm_token_type_ids" in batch  # needed for Qwen M-RoPE (ml-stack.md 4.1)


def test_tool_format_conversation(rows):
    conv = to_conversation(rows[0]["messages"], rows[0]["images"], request_format="tool", system_prompt="S")
    roles = [m["role"] for m in conv]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert conv[0]["content"][0]["text"] == "S"
    assert conv[2]["tool_calls"][0]["function"] == {"name": "get_crops",
                                                   "arguments": {"regions": rows[0]["target_regions"]}}
    assert [p["type"] for p in conv[3]["content"]] == ["image", "text"]
    with pytest.raises(ValueError, match="placeholders"):
        to_conversation(rows[0]["messages"], rows[0]["images"][:1])


def test_template_without_generation_markers_is_refused():
    from awares_tool.backends.hf_processors import load_processor
    from awares_train.testing.tiny_vlms import tiny_vlm_path

    proc = load_processor(str(tiny_vlm_path("llava")))  # custom template, no TRL training variant
    with pytest.raises(ValueError, match="generation"):
        TrajectoryCollator(proc)


@pytest.mark.parametrize("family,fmt", [("qwen2.5-vl", "tool"), ("idefics3", "text")])
def test_region_token_weight_lands_on_the_region_name_only(rows, family, fmt):
    proc, plain = _collator(family, fmt)
    tools = plain.tools
    col = TrajectoryCollator(proc, request_format=fmt, tools=tools, system_prompt="Answer or crop.",
                             tool_turn_weight=5.0, region_token_weight=8.0)
    base, weighted = plain(rows), col(rows)
    assert bool((base["labels"] == weighted["labels"]).all())
    changed = (weighted["loss_weights"] != base["loss_weights"]).nonzero().tolist()
    assert changed and all(b == 0 for b, _ in changed)  # only the crop row's request turn
    ids = [int(weighted["input_ids"][0][j]) for _, j in changed]
    assert proc.tokenizer.decode(ids).strip() == rows[0]["target_regions"][0]
    assert {float(weighted["loss_weights"][0][j]) for _, j in changed} == {40.0}


def test_name_token_positions_finds_multi_token_names():
    from awares_train.sft.collator import name_token_positions

    pieces = ["GET", "_CROPS", ": ['", "top", "_left", "', '", "3", "']"]
    assert name_token_positions(pieces, ["top_left", "3"]) == [3, 4, 6]
    assert name_token_positions(pieces, ["9"]) == []
