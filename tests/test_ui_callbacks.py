"""The web demo's callbacks, called directly (no Gradio, no browser) with a scripted model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from awares_tool.backends.scripted import ScriptedBackend
from awares_tool.crops import get_crop_set
from awares_tool.errors import BackendError, BackendUnavailableError
from awares_tool.images import ImageLimits
from awares_tool.crops.overlay import HIGHLIGHT_COLOR
from awares_tool.ui import callbacks as cb
from awares_tool.ui.callbacks import DEFAULT_CHOICE, BackendPool, ask, backend_hint, check_upload, compare

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "examples" / "images" / "code_and_shapes.png"  # 448x448, the code "808" in region 1


def model_reply(messages) -> str:
    """A trained model's behaviour: crop the top-right quarter for the code, answer from what it then sees."""
    labels = [p.label or "" for m in messages for p in m.content if hasattr(p, "image")]
    if any(label.startswith("crop") or label == "full image" for label in labels):
        return "808"
    question = next(m.text_content for m in messages if m.role == "user")
    return "GET_CROPS: ['1']" if "code" in question.lower() else "red"


@pytest.fixture
def pool() -> BackendPool:
    return BackendPool({"scripted": ScriptedBackend(model_reply)})


def last(views):
    views = list(views)
    assert views and all(v.status for v in views), "every step must say what it is doing"
    return views[-1], views


def test_code_question_fetches_region_1_and_shows_where(pool):
    view, steps = last(ask(pool, str(IMAGE), "What is the code?", backend="scripted"))
    assert [s.status.split(" ")[0] for s in steps[:-1]] == ["Asking"]  # a named backend object is ready
    assert view.ok and view.result.answer == "808"
    assert "Answer: 808" in view.answer
    assert "Fetched regions: 1 (top-right quarter)" in view.answer
    assert "RTR 0.500" in view.ledger and "| crop 1 | 224x224 | 64 |" in view.ledger
    assert "over 2 model turn(s)" in view.timings
    assert view.lowres.size == (224, 224)  # the half-size view the model saw first
    crop, caption = view.crops[0]
    assert len(view.crops) == 1 and caption.startswith("crop 1: 224x224")
    assert crop.tobytes() == Image.open(IMAGE).convert("RGB").crop((224, 0, 448, 224)).tobytes()
    # the fetched region is tinted with the highlight colour, the others are not drawn
    reddish = lambda px: px[0] > px[1] + 40 and px[0] > px[2] + 40  # noqa: E731
    base = Image.open(IMAGE).convert("RGB")
    assert view.overlay.size == base.size
    assert reddish(view.overlay.getpixel((440, 200))) and not reddish(base.getpixel((440, 200)))
    assert view.overlay.getpixel((5, 440)) == base.getpixel((5, 440))
    assert HIGHLIGHT_COLOR[0] > 200


def test_colour_question_needs_no_crop(pool):
    view, _ = last(ask(pool, str(IMAGE), "What color is the circle?", backend="scripted"))
    assert view.result.answer == "red" and view.crops == []
    assert "none, answered from the low-res view" in view.answer
    assert "RTR 0.250" in view.ledger


def test_second_question_reuses_the_loaded_backend():
    """The page says "Loading" only while the resolver's cache does not hold the spec yet."""
    built: dict[str, ScriptedBackend] = {}

    def resolver(spec):
        return built.setdefault(spec, ScriptedBackend(model_reply))

    pool = BackendPool(resolver=resolver, loaded=lambda spec: spec in built)
    spec = "openai:http://127.0.0.1:1/v1#m"
    _, steps = last(ask(pool, str(IMAGE), "What is the code?", backend=spec))
    assert [s.status.split(" ")[0] for s in steps[:-1]] == ["Loading", "Asking"]
    _, steps = last(ask(pool, str(IMAGE), "What is the code?", backend=spec))
    assert [s.status.split(" ")[0] for s in steps[:-1]] == ["Asking"] and list(built) == [spec]


def test_side_by_side_shows_both_answers_costs_and_times(pool):
    view, steps = last(compare(pool, str(IMAGE), "What is the code?", backend="scripted"))
    assert any("(fullres)" in s.status for s in steps) and any("(awares)" in s.status for s in steps)
    rows = {line.split("|")[1].strip(): line for line in view.comparison.splitlines() if line.startswith("| ")}
    assert "| 808 | - | 256 | 1.000 |" in rows["fullres"]
    assert "| 808 | 1 | 128 | 0.500 |" in rows["awares"]
    assert "Answers agree. AwaRes used 50% of the full-resolution visual tokens" in view.comparison
    assert view.status.startswith("Done: full resolution") and view.result.mode == "awares"


def test_modes_and_settings_reach_the_loop(pool):
    view, _ = last(ask(pool, str(IMAGE), "What is the code?", backend="scripted", mode="fullres"))
    assert view.result.mode == "fullres" and view.lowres.size == (448, 448) and "RTR 1.000" in view.ledger
    view, _ = last(ask(pool, str(IMAGE), "What is the code?", backend="scripted", lowres="112px", crop_set="readme"))
    assert view.result.first_view_size == (112, 112) and view.result.crop_set == "readme"
    assert view.lowres.size == (112, 112)
    assert "Fetched regions: 1 (" + get_crop_set("readme").regions[1].description + ")" in view.answer


def test_not_an_image_and_too_large_get_clear_messages(tmp_path, pool):
    text = tmp_path / "notes.png"
    text.write_text("these are not pixels")
    preview, msg = check_upload(str(text))
    assert preview is None and msg.startswith("Bad image:") and "notes.png" in msg
    preview, msg = check_upload(str(IMAGE), ImageLimits(max_pixels=10_000))
    assert preview is None and msg.startswith("Bad image:") and "200704" in msg.replace(",", "")
    view, _ = last(ask(pool, str(text), "What is the code?", backend="scripted"))
    assert not view.ok and view.status.startswith("Bad image:")
    assert check_upload(None)[1].startswith("No image yet")
    preview, msg = check_upload(str(IMAGE))
    assert preview.size == (448, 448) and msg.startswith("Image ready: code_and_shapes.png, 448x448")


def test_missing_inputs_and_bad_settings(pool):
    assert last(ask(pool, None, "What is the code?"))[0].status.startswith("Upload an image")
    assert last(ask(pool, str(IMAGE), "   "))[0].status.startswith("Type a question")
    assert last(ask(pool, str(IMAGE), "q", backend="scripted", mode="bogus"))[0].status.startswith("Bad setting")
    view, _ = last(ask(pool, str(IMAGE), "q", backend="scripted", crop_set="nine-ish"))
    assert view.status.startswith("Bad crop set:") and "nine-ish" in view.status
    view, _ = last(ask(pool, str(IMAGE), "q", backend="scripted", lowres="huge"))
    assert view.status.startswith("Bad setting:") and "huge" in view.status
    assert last(ask(pool, str(IMAGE), "q", backend="scripted", timeout_s=-1))[0].status.startswith("Bad setting")


def test_backend_errors_and_timeouts_are_reported_not_hung():
    pool = BackendPool({"down": ScriptedBackend([BackendError("server at :8080 refused the connection")]),
                        "slow": ScriptedBackend(["red"], delay_s=2.0)})
    view, _ = last(ask(pool, str(IMAGE), "What is the code?", backend="down"))
    assert view.status == "Backend error: server at :8080 refused the connection"
    view, _ = last(ask(pool, str(IMAGE), "What is the code?", backend="slow", timeout_s=0.2))
    assert view.status.startswith("Timed out:") and "within 0.2 s" in view.status


def test_unavailable_backend_message_reaches_the_page():
    def resolver(spec):
        raise BackendUnavailableError(f"the embedded default model is missing (asked for {spec!r})")

    pool = BackendPool(resolver=resolver)
    view, steps = last(ask(pool, str(IMAGE), "What is the code?"))
    assert steps[0].status.startswith(f"Loading backend {DEFAULT_CHOICE}")
    assert view.status == "Backend unavailable: the embedded default model is missing (asked for None)"


def test_real_default_backend_missing_is_explained(monkeypatch, tmp_path):
    monkeypatch.setattr("awares_tool.backends._MODELS_DIR", tmp_path)  # the cache keys the default by its path
    monkeypatch.setattr(cb, "default_model_path", lambda: tmp_path / "tiny-awares")
    pool = BackendPool()
    assert backend_hint(pool, None).startswith("Backend unavailable: the embedded default model is missing")
    view, _ = last(ask(pool, str(IMAGE), "What is the code?"))
    assert view.status.startswith("Backend unavailable: the embedded default model is missing at")


def test_pool_resolves_choices_through_the_resolver_and_retries_failures():
    """The pool keeps no models: every choice goes to the resolver (by default the process-wide cache)."""
    calls: list[object] = []
    fake = ScriptedBackend(["red"])

    def resolver(spec):
        calls.append(spec)
        if len(calls) == 1:
            raise BackendUnavailableError("not yet")
        return fake

    pool = BackendPool({"named": "transformers:/models/x"}, resolver=resolver, loaded=lambda spec: spec is None)
    assert pool.choices() == [DEFAULT_CHOICE, "named"]
    with pytest.raises(BackendUnavailableError):
        pool.get(None)
    assert pool.get(None) is fake and pool.get(DEFAULT_CHOICE) is fake  # a failed load is retried
    assert pool.get("named") is fake and pool.get(" named ") is fake
    assert pool.get("openai:http://127.0.0.1:1/v1#m") is fake
    assert calls == [None, None, None, "transformers:/models/x", "transformers:/models/x",
                     "openai:http://127.0.0.1:1/v1#m"]
    assert backend_hint(pool, DEFAULT_CHOICE) == f"Backend {DEFAULT_CHOICE}: loaded."
    assert backend_hint(pool, "named") == "Backend named: loads on the first question."


def test_malformed_typed_spec_is_named_before_any_load():
    pool = BackendPool()
    hint = backend_hint(pool, "transformers:/models/x?dtpye=bf16")
    assert hint.startswith("Bad backend spec: unknown option 'dtpye'") and "dtype" in hint
    view, _ = last(ask(pool, str(IMAGE), "What is the code?", backend="transformers:/models/x?dtype=bf17"))
    assert view.status.startswith("Bad backend spec: bad value 'bf17' for option 'dtype'")


def test_unknown_token_counts_say_rtr_unknown():
    pool = BackendPool({"s": ScriptedBackend(model_reply, token_family=None)})
    view, _ = last(ask(pool, str(IMAGE), "What is the code?", backend="s"))
    assert view.ok and "RTR unknown" in view.ledger and "pixel ratio 0.500" in view.ledger


def test_endless_requests_are_flagged():
    pool = BackendPool({"s": ScriptedBackend(["GET_CROPS: ['1']"], repeat_last=True)})
    view, _ = last(ask(pool, str(IMAGE), "What is the code?", backend="s"))
    assert not view.ok and "gave no final answer" in view.answer and "no final answer" in view.status


def test_gallery_has_crop_and_no_crop_questions(tmp_path):
    from awares_tool.demo import demo_items

    found = cb.gallery_examples()
    bench = [(image.name, q["needs_crop"]) for image, q in demo_items() if q.get("benchmark")]
    assert len(bench) == 3  # the demo's document, chart and scene items, after the checkout's example image
    assert [(e.image.name, e.needs_crop) for e in found] == [("code_and_shapes.png", True),
                                                             ("code_and_shapes.png", False)] + bench
    Image.new("RGB", (64, 48), "white").save(tmp_path / "blank.png")
    Image.new("RGB", (64, 48), "black").save(tmp_path / "dark.jpg")
    (tmp_path / "dark.json").write_text(json.dumps([{"question": "Is it dark?", "answer": "yes", "needs_crop": False}]))
    found = cb.gallery_examples(tmp_path)
    by_name = {e.image.name: e for e in found}
    assert by_name["dark.jpg"].question == "Is it dark?" and by_name["dark.jpg"].answer == "yes"
    assert by_name["blank.png"].needs_crop is None
    from awares_tool.demo import demo_assets

    shipped = [q["question"] for q in demo_assets()[1]]  # the shipped demo image joins with its own questions
    assert [e.question for e in found if e.image.name == "demo.png"] == shipped and len(shipped) == 2
    assert len(cb.gallery_examples(tmp_path / "absent")) == 5  # an installed package: the shipped assets only


def test_callbacks_do_not_import_gradio():
    code = "import sys, awares_tool.ui, awares_tool.ui.callbacks; assert 'gradio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_cli_ui_help_and_missing_extra(monkeypatch):
    from awares_tool import cli, errors

    res = CliRunner().invoke(cli.app, ["ui", "--help"])
    assert res.exit_code == 0 and "--backend" in res.output and "--port" in res.output

    def missing(module, extra, package=None):
        raise errors.MissingExtraError(f"{module} is required for this feature but is not installed: "
                                       f"pip install 'awares[{extra}]'")

    monkeypatch.setattr(errors, "require_extra", missing)
    res = CliRunner().invoke(cli.app, ["ui"])
    assert res.exit_code == 2 and "pip install 'awares[ui]'" in res.output


@pytest.mark.hf
@pytest.mark.slow
def test_typed_transformers_spec_runs_a_real_tiny_model():
    """A spec typed into the backend box loads a real (tiny, random) model through the transformers backend."""
    pytest.importorskip("transformers")
    from awares_train.testing import tiny_vlm_path

    spec = f"transformers:{tiny_vlm_path('qwen2.5-vl')}"
    pool = BackendPool()
    view, steps = last(ask(pool, str(IMAGE), "What is the code?", backend=spec, max_new_tokens=4))
    assert steps[0].status.startswith(f"Loading backend {spec}")
    res = view.result
    assert res is not None, view.status
    assert res.tokens.source == "backend" and res.tokens.full and 0 < res.tokens.rtr <= 1.5
    assert f"RTR {res.tokens.rtr:.3f}" in view.ledger
    assert res.timings and res.timings[0].prompt_tokens > 0 and "model turn(s)" in view.timings
    assert pool.is_loaded(spec)
    from awares_tool.backends import resolve_backend

    assert pool.get(spec) is resolve_backend(spec)  # one model, shared with everything else in the process
