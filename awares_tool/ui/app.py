"""The Gradio page of ``awares ui``: see where the model looked, what it cost and how long it took.

Only the layout and the wiring live here; the work is done by the plain functions of
:mod:`awares_tool.ui.callbacks`, which the tests call without a browser. Gradio is imported when the
page is built (extra ``ui``), so ``import awares_tool`` never needs it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import require_extra
from awares_tool.images import ImageLimits
from .callbacks import (
    EXAMPLES_DIR,
    MODEL_DEFAULT,
    MODES,
    BackendPool,
    RunView,
    ask,
    backend_hint,
    check_upload,
    compare,
    gallery_examples,
)

__all__ = ["build_app", "launch_app", "serve"]

log = logging.getLogger(__name__)

_CROP_SETS = [MODEL_DEFAULT, "awares9", "readme", "grid:2x2", "grid:3x3"]
_LOWRES = [MODEL_DEFAULT, "0.5", "512px", "tokens:qwen2.5-vl:256"]
_INTRO = (
    "# awares: look where it matters\n"
    "The model first sees a cheap **low-resolution view** and fetches **high-resolution crops** only where "
    "the question needs them. Upload an image (or pick an example), ask a question, and see which regions it "
    "fetched, what that cost against full resolution (**RTR**, retained token ratio) and how long each turn took."
)


def _gradio() -> Any:
    # Gradio reports usage to its servers unless told not to; the demo must work offline.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return require_extra("gradio", "ui")


def build_app(
    backend: Any = None,
    *,
    backends: Mapping[str, Any] | None = None,
    examples_dir: Path | None = EXAMPLES_DIR,
    limits: ImageLimits | None = None,
    timeout_s: float = 180.0,
) -> Any:
    """Build the page (a ``gradio.Blocks``); launch it with :func:`launch_app`.

    Args:
        backend: The preselected backend: a spec string, a backend object, or None for the embedded
            default model.
        backends: More named choices for the backend menu (name -> spec or backend object).
        examples_dir: Folder of example images for the gallery (see :func:`gallery_examples`).
        limits: Limits applied to uploads (pixels, bytes); defaults to :class:`ImageLimits`'.
        timeout_s: Default time limit for one question, shown (and editable) on the page.

    Raises:
        MissingExtraError: Gradio is not installed (``pip install 'awares[ui]'``).
    """
    gr = _gradio()
    named = dict(backends or {})
    if backend is not None:
        label = backend if isinstance(backend, str) else getattr(backend, "name", type(backend).__name__)
        named.setdefault(label, backend)
        selected = label
    else:
        selected = None
    pool = BackendPool(named)
    choices = pool.choices()
    selected = selected or choices[0]
    limits = limits or ImageLimits()
    examples = gallery_examples(examples_dir)

    with gr.Blocks(title="awares: look where it matters", analytics_enabled=False) as page:
        gr.Markdown(_INTRO)
        with gr.Row():
            with gr.Column(scale=2):
                upload = gr.File(label="Image (upload or pick an example below)", file_types=["image"],
                                 type="filepath", elem_id="upload")
                preview = gr.Image(label="Uploaded image", interactive=False, height=220, elem_id="preview")
                question = gr.Textbox(label="Question", placeholder="What is the code?", elem_id="question")
                gr.Examples(
                    examples=[[str(e.image), e.question] for e in examples],
                    inputs=[upload, question],
                    label="Examples (one needs a high-res crop, one does not)",
                    example_labels=[_example_label(e) for e in examples],
                )
                with gr.Row():
                    ask_btn = gr.Button("Ask", variant="primary", elem_id="ask")
                    cmp_btn = gr.Button("Side by side: full resolution vs AwaRes", elem_id="compare")
                with gr.Accordion("Backend and settings", open=True):
                    backend_box = gr.Dropdown(
                        choices=choices, value=selected, allow_custom_value=True, elem_id="backend",
                        label="Backend / model",
                        info="Pick one, or type a spec: transformers:/path/to/model, llamacpp:model.gguf, "
                        "openai:http://host:port/v1#model",
                    )
                    with gr.Row():
                        crop_box = gr.Dropdown(choices=_CROP_SETS, value=MODEL_DEFAULT, allow_custom_value=True,
                                               label="Crop set")
                        lowres_box = gr.Dropdown(choices=_LOWRES, value=MODEL_DEFAULT, allow_custom_value=True,
                                                 label="Low-res view")
                    mode_box = gr.Radio(choices=list(MODES), value="awares", label="Mode",
                                        info="awares: the method; lowres/fullres: one look at that resolution; "
                                        "all_crops / full_on_request: baselines")
                    with gr.Row():
                        timeout_box = gr.Number(value=timeout_s, minimum=1, label="Time limit (s)")
                        tokens_box = gr.Number(value=128, minimum=1, precision=0, label="Max new tokens per turn")
            with gr.Column(scale=3):
                status = gr.Markdown(backend_hint(pool, selected), elem_id="status")
                answer = gr.Markdown(elem_id="answer")
                comparison = gr.Markdown(elem_id="comparison")
                with gr.Row():
                    lowres_img = gr.Image(label="What the model saw first", interactive=False, elem_id="lowres")
                    overlay_img = gr.Image(label="Where it looked (fetched regions in red)", interactive=False,
                                           elem_id="overlay")
                crops_gallery = gr.Gallery(label="Crops fetched at full resolution", columns=4, height=240,
                                           object_fit="contain", preview=False, fit_columns=False,
                                           elem_id="crops")
                ledger = gr.Markdown(elem_id="ledger")
                timings = gr.Markdown(elem_id="timings")

        outputs = [status, answer, comparison, lowres_img, overlay_img, crops_gallery, ledger, timings]
        settings = [backend_box, crop_box, lowres_box, timeout_box, tokens_box]

        def show(view: RunView) -> list[Any]:
            return [view.status, view.answer, view.comparison, view.lowres, view.overlay, view.crops,
                    view.ledger, view.timings]

        def on_upload(path: str | None) -> tuple[Any, str]:
            return check_upload(path, limits)

        def on_ask(path, q, be, cs, lr, tmo, ntok, mode) -> Iterator[list[Any]]:
            for view in ask(pool, path, q, backend=be, crop_set=cs, mode=mode, lowres=lr, timeout_s=tmo,
                            max_new_tokens=int(ntok or 128), limits=limits):
                yield show(view)

        def on_compare(path, q, be, cs, lr, tmo, ntok) -> Iterator[list[Any]]:
            for view in compare(pool, path, q, backend=be, crop_set=cs, lowres=lr, timeout_s=tmo,
                                max_new_tokens=int(ntok or 128), limits=limits):
                yield show(view)

        upload.change(on_upload, upload, [preview, status])
        backend_box.change(lambda c: backend_hint(pool, c), backend_box, status)
        ask_btn.click(on_ask, [upload, question, *settings, mode_box], outputs)
        question.submit(on_ask, [upload, question, *settings, mode_box], outputs)
        cmp_btn.click(on_compare, [upload, question, *settings], outputs)
    page.awares_pool = pool  # for callers and tests that want the loaded backends
    return page


def _example_label(e: Any) -> str:
    need = {True: " (needs a crop)", False: " (low-res suffices)"}.get(e.needs_crop, "")
    return f"{Path(e.image).name}: {e.question}{need}"


def _theme(gr: Any) -> Any:
    # System fonts only: the default theme loads web fonts from the internet, which a closed network
    # (and a privacy-minded user) does not want.
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def launch_app(page: Any, *, host: str = "127.0.0.1", port: int | None = None, block: bool = True,
               max_file_size: int | None = None) -> Any:
    """Serve ``page`` on ``host:port`` (no public share link, no web fonts, no analytics).

    Args:
        block: Wait until interrupted (the CLI); False returns at once with the server running
            (tests; stop it with ``page.close()``).
        max_file_size: Refuse uploads larger than this many bytes before they reach the disk.
    """
    gr = _gradio()
    return page.launch(
        server_name=host, server_port=port, share=False, prevent_thread_lock=not block, quiet=not block,
        ssr_mode=False, theme=_theme(gr), max_file_size=max_file_size, show_error=True,
        footer_links=[],
    )


def serve(backend: str | None = None, *, host: str = "127.0.0.1", port: int | None = None,
          limits: ImageLimits | None = None, timeout_s: float = 180.0) -> None:
    """Build and serve the page until interrupted (what ``awares ui`` runs)."""
    limits = limits or ImageLimits()
    page = build_app(backend, limits=limits, timeout_s=timeout_s)
    launch_app(page, host=host, port=port, block=True, max_file_size=limits.max_bytes)
