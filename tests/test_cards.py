"""Built-in model cards: the published AwaRes checkpoint is spoken to in its own protocol (#18)."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from awares_tool.backends.cards import builtin_card_names, card_for_model, load_card
from awares_tool.errors import BackendUnavailableError


def test_the_official_card_states_the_published_protocol():
    card = load_card("awares-official")
    assert "awares-official" in builtin_card_names()
    assert card.request_format == "text" and card.crops_turn_text == ""  # crops: a user turn of images only
    assert card.lowres == {"kind": "scale", "factor": 0.5}
    assert (card.min_pixels, card.max_pixels) == (32 * 28 * 28, 2048 * 28 * 28)
    assert "GET_CROPS: ['0', '5']" in card.system_prompt and "arXiv 2603.16932" in card.source
    with pytest.raises(BackendUnavailableError, match="built-in card: awares-official"):
        load_card("awares-unofficial")


@pytest.mark.parametrize("ref", ["Kimhi/AWARES-Qwen2.5-VL-7B", "kimhi/awares-qwen2.5-vl-7b",
                                 "/models/AWARES-Qwen2.5-VL-7B/",
                                 "/root/.cache/huggingface/hub/models--Kimhi--AWARES-Qwen2.5-VL-7B/snapshots/abc"])
def test_the_card_is_chosen_for_the_checkpoint_id(ref):
    assert card_for_model(ref) is not None and card_for_model(ref).name == "awares-official"


def test_other_models_get_no_card():
    assert card_for_model("Qwen/Qwen2.5-VL-7B-Instruct") is None


@pytest.mark.hf
def test_a_local_copy_of_the_checkpoint_runs_the_official_protocol(tmp_path):
    pytest.importorskip("transformers")
    from awares_tool import crop_on_demand
    from awares_tool.backends.scripted import ReplayBackend
    from awares_tool.backends.transformers import TransformersBackend
    from awares_train.testing.tiny_vlms import tiny_vlm_path

    folder = tmp_path / "AWARES-Qwen2.5-VL-7B"  # as `hf download Kimhi/AWARES-Qwen2.5-VL-7B --local-dir ...` names it
    shutil.copytree(tiny_vlm_path("qwen2.5-vl"), folder)
    inner = TransformersBackend(folder)
    assert inner.model_card.name == "awares-official"
    size = inner.processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (25088, 1605632)  # the card's pixel limits
    be = ReplayBackend(inner, ["GET_CROPS: ['3']", "42"])
    res = crop_on_demand(Image.new("RGB", (448, 336), "white"), "What is the code?", backend=be)
    assert res.answer == "42" and res.regions == ["3"] and res.first_view_size == (224, 168)
    system, crops_turn = res.trace[0], res.trace[3]
    assert system["content"][0]["text"] == load_card("awares-official").system_prompt
    assert crops_turn["role"] == "user" and [p["type"] for p in crops_turn["content"]] == ["image"]


@pytest.mark.hf
def test_cli_card_by_name_applies_its_protocol(tmp_path):
    pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from awares_tool.cli import app
    from awares_train.testing.tiny_vlms import tiny_vlm_path

    img = tmp_path / "page.png"
    Image.new("RGB", (448, 336), "white").save(img)
    out = CliRunner().invoke(app, ["ask", str(img), "What is it?", "--backend",
                                   f"transformers:{tiny_vlm_path('qwen2.5-vl')}", "--card", "awares-official",
                                   "--json", "--max-new-tokens", "4"])
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res["trace"][0]["content"][0]["text"] == load_card("awares-official").system_prompt
