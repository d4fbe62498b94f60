"""The ``awares`` command line: crop sets, crops, overlays, token accounting and questions.

Every command prints plain text by default and one JSON object with ``--json``, so scripts can use it.
Errors that users cause exit with code 2 and a one-line message, never a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from .errors import AwaresError

app = typer.Typer(
    # help texts render as written: rich's markup reads `tokens:family:N` as an emoji code ("tokens👪N")
    rich_markup_mode=None,
    add_completion=False,
    no_args_is_help=True,
    help="Look where it matters: low-res views and on-demand high-res crops for vision-language models.",
)


def device_option() -> Any:
    """``--device``, as every command that loads a model takes it (also ``awares-train``'s)."""
    from .backends.spec import DEVICE_HELP

    return typer.Option(None, "--device", help=DEVICE_HELP)


def dtype_option() -> Any:
    """``--dtype``, as every command that loads a model takes it."""
    from .backends.spec import DTYPE_HELP

    return typer.Option(None, "--dtype", help=DTYPE_HELP)


def attn_option() -> Any:
    """``--attn``, as every command that loads a model takes it."""
    from .backends.spec import ATTN_HELP

    return typer.Option(None, "--attn", help=ATTN_HELP)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _guard(fn: Callable[[], Any]) -> Any:
    """Run a command: every failure the user can cause is one line on stderr and exit status 2."""
    try:
        return fn()
    except AwaresError as e:
        _fail(str(e))
    except (ValueError, OSError) as e:  # bad option values (sizes, specs); files that cannot be written or read
        _fail(f"{type(e).__name__}: {e}" if isinstance(e, OSError) else str(e))


def _is_file(text: str) -> bool:
    """Whether ``text`` names an existing file; a base64 string or data URI is no file name (and may be too
    long to be one: ``Path.exists()`` raises ``OSError: File name too long`` on it)."""
    try:
        return len(text) < 4096 and Path(text).is_file()
    except (OSError, ValueError):
        return False


def _out_folder(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder; give a folder for the crops")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _parse_size(size: str, what: str = "--size") -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ValueError(f"{what} must look like 1024x768, got {size!r}") from None
    if w < 1 or h < 1:
        raise ValueError(f"{what} must be positive, got {size!r}")
    return w, h


def _split(regions: Optional[str]) -> list[str] | None:
    if regions is None:
        return None
    names = [r.strip() for r in regions.split(",") if r.strip()]
    if not names:
        raise ValueError("--regions is empty; give names like 0,4")
    return names


@app.command()
def regions(
    size: str = typer.Option(..., "--size", help="Image size as WIDTHxHEIGHT, e.g. 1024x768."),
    crop_set: str = typer.Option("awares9", "--set", help="Crop set: awares9, readme, grid:3x3, or a JSON/YAML file."),
    as_json: bool = typer.Option(False, "--json", help="Print {name: [left, top, right, bottom]} as JSON."),
) -> None:
    """Print the boxes of a crop set for an image size."""
    from awares_tool.crops import get_crop_set

    def run() -> None:
        w, h = _parse_size(size)
        cs = get_crop_set(crop_set)
        boxes = cs.boxes(w, h)
        if as_json:
            typer.echo(json.dumps({k: list(v) for k, v in boxes.items()}))
            return
        desc = {r.name: r.description for r in cs.regions}
        for name, box in boxes.items():
            typer.echo(f"{name:>6}  {str(box):<28} {desc.get(name, '')}")

    _guard(run)


@app.command()
def crop(
    image: str = typer.Argument(..., help="Image path."),
    regions_: str = typer.Option(..., "--regions", help="Comma-separated region names, e.g. 0,4."),
    out: Path = typer.Option(..., "--out", help="Folder for the crops."),
    crop_set: str = typer.Option("awares9", "--set", help="Crop set name or file."),
    fmt: str = typer.Option("png", "--format", help="png or jpg."),
) -> None:
    """Write high-resolution crops cut from the original pixels and print their paths."""
    from awares_tool.crops import get_crop_set
    from awares_tool.images import open_image

    def run() -> None:
        names = _split(regions_) or []
        src = open_image(image)
        cs = get_crop_set(crop_set)
        boxes = {n: cs.box(n, *src.size) for n in names}  # validate every name before writing anything
        _out_folder(out)
        stem = Path(image).stem if _is_file(image) else src.id
        for name, box in boxes.items():
            path = out / f"{stem}_crop-{name.replace('/', '_')}.{fmt}"
            src.crop(box).save(path)
            typer.echo(str(path))

    _guard(run)


@app.command()
def show(
    image: str = typer.Argument(..., help="Image path."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    regions_: Optional[str] = typer.Option(None, "--regions", help="Only these regions (default: the whole set)."),
    highlight: Optional[str] = typer.Option(None, "--highlight", help="Regions to highlight as fetched."),
    crop_set: str = typer.Option("awares9", "--set", help="Crop set name or file."),
) -> None:
    """Draw the crop set (or the chosen regions) over the image."""
    from awares_tool.crops import get_crop_set
    from awares_tool.images import open_image
    from awares_tool.crops.overlay import draw_overlay

    def run() -> None:
        src = open_image(image)
        cs = get_crop_set(crop_set)
        pic = draw_overlay(src.image, cs, _split(regions_), highlight=_split(highlight) or ())
        out.parent.mkdir(parents=True, exist_ok=True)
        pic.save(out)
        typer.echo(str(out))

    _guard(run)


@app.command()
def tokens(
    image: str = typer.Argument(..., help="Image path (or WIDTHxHEIGHT)."),
    family: str = typer.Option("qwen2.5-vl", "--family", help="Model family, e.g. qwen2.5-vl, qwen3-vl, llava-next."),
    crop_set: str = typer.Option("awares9", "--set", help="Crop set name or file."),
    lowres: Optional[str] = typer.Option(None, "--lowres", help="Low-res policy: 0.5, 512px, tokens:FAMILY:N."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Visual tokens at full resolution, of the low-res view and of each crop, and the RTR of each choice."""
    from awares_tool.episode.costs import token_report

    def run() -> None:
        if _is_file(image):
            from awares_tool.images import open_image

            w, h = open_image(image).size
        elif re.fullmatch(r"\s*\d+\s*[xX]\s*\d+\s*", image):
            w, h = _parse_size(image, "IMAGE")
        else:
            raise ValueError(f"IMAGE {image[:80]!r}{'...' if len(image) > 80 else ''} is neither an image file nor "
                             "a size WIDTHxHEIGHT such as 1024x768")
        rep = token_report(w, h, family, crop_set=crop_set, lowres=lowres)
        if as_json:
            typer.echo(rep.model_dump_json())
            return
        typer.echo(f"image {w}x{h}, family {rep.family}")
        typer.echo(f"  full resolution      {rep.full:>7} tokens  RTR 1.000")
        if rep.full_native != rep.full:
            typer.echo(f"  (native resolution   {rep.full_native:>7} tokens: above the model's pixel cap, which "
                       "downscales the full view; RTRs here are against the capped view)")
        typer.echo(f"  low-res view {rep.lowres_size[0]}x{rep.lowres_size[1]:<6} {rep.lowres:>7} tokens  RTR {rep.rtr_lowres:.3f}")
        for name, n in rep.crops.items():
            typer.echo(f"  + crop {name:<14} {n:>7} tokens  RTR {rep.rtr_with_crop[name]:.3f}")

    _guard(run)


@app.command()
def ask(
    image: str = typer.Argument(..., help="Image path."),
    question: str = typer.Argument(..., help="The question."),
    backend: Optional[str] = typer.Option(None, "--backend", help="transformers:PATH, llamacpp:GGUF, openai:URL#MODEL."),
    mmproj: Optional[str] = typer.Option(None, "--mmproj", help="Projector GGUF for llamacpp backends."),
    card: Optional[str] = typer.Option(None, "--card", help="The model's awares.json (or its folder), or a built-in card "
                                       "(awares-official: the published AWARES-Qwen2.5-VL-7B): its prompt, crop set, "
                                       "low-res policy, request format and pixel limits."),
    tool_images: bool = typer.Option(False, "--tool-images", help="openai backends: send crops inside the tool "
                                     "message (vLLM; for models trained with tool calls)."),
    mode: str = typer.Option("awares", "--mode", help="awares, lowres, fullres, all_crops, full_on_request."),
    crop_set: Optional[str] = typer.Option(None, "--set", help="Crop set (default: the model's)."),
    lowres: Optional[str] = typer.Option(None, "--lowres", help="Low-res policy (default: the model's)."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Decoding limit per turn."),
    show: Optional[Path] = typer.Option(None, "--show", help="Also write the overlay of the fetched crops here."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
    device: Optional[str] = device_option(),
    dtype: Optional[str] = dtype_option(),
    attn: Optional[str] = attn_option(),
) -> None:
    """Answer a question about an image, fetching high-res crops only where the model asks."""
    from .backends import resolve_backend
    from awares_tool.episode.loop import crop_on_demand

    def run() -> None:
        options: dict[str, Any] = {"mmproj": mmproj} if mmproj else {}
        if tool_images:
            if not (backend or "").startswith("openai:"):
                raise typer.BadParameter("--tool-images applies to openai:URL#MODEL backends only")
            options["tool_images"] = True
        from .backends.cards import load_card

        named_card = load_card(card) if card is not None else None  # a bad name or path fails before the model loads
        if named_card is not None and (backend or "").split(":")[0] in ("transformers", "hf", "openai"):
            options["model_card"] = named_card  # these apply its pixel limits / wording themselves
        be = resolve_backend(backend, **options, device=device, dtype=dtype, attn=attn)
        if named_card is not None:
            be.model_card = named_card
        res = crop_on_demand(
            image, question, backend=be, mode=mode, crop_set=crop_set, lowres=lowres,  # type: ignore[arg-type]
            max_new_tokens=max_new_tokens,
        )
        if show is not None:
            _write_overlay(image, res, show)
        if as_json:
            typer.echo(res.model_dump_json(indent=2))
            return
        _print_result(res)
        placement = getattr(be, "placement", None)
        if placement is not None:
            typer.echo(f"model:    {res.backend} on {placement.describe()}")

    _guard(run)


def _write_overlay(image: str, res: Any, path: Path) -> None:
    from awares_tool.crops import get_crop_set
    from awares_tool.images import open_image
    from awares_tool.crops.overlay import draw_overlay

    src = open_image(image)
    fetched = [r for r in res.regions if r != "all"]
    title = f"{res.question}  ->  {res.answer}  (RTR {res.rtr:.2f})" if res.rtr is not None else res.question
    pic = draw_overlay(src.image, get_crop_set(res.crop_set or None), fetched or [], highlight=fetched, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    pic.save(path)


def _print_result(res: Any) -> None:
    typer.echo(f"question: {res.question}")
    typer.echo(f"answer:   {res.answer}" + ("" if res.answered else "   (no final answer)"))
    fetched = ", ".join(res.regions) or "none (answered from the low-res view)"
    typer.echo(f"regions:  {fetched}" + ("   (forced to answer)" if res.forced_answer else ""))
    led = res.tokens
    if led.rtr is not None:
        typer.echo(f"tokens:   {led.spent} visual tokens vs {led.full} at full resolution -> RTR {led.rtr:.3f}"
                   f" ({led.source}); pixel ratio {led.pixel_ratio:.3f}")
    else:
        typer.echo(f"tokens:   unknown for this backend; pixel ratio {led.pixel_ratio:.3f}")
    turns = "  ".join(f"turn {t.turn}: prefill {t.prefill_s:.3f}s decode {t.decode_s:.3f}s" for t in res.timings)
    typer.echo(f"time:     {res.wall_s:.3f}s total  {turns}")


@app.command()
def demo(
    out: Path = typer.Option(Path("out/demo"), "--out", help="Folder for the pictures."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Backend spec (default: the embedded model)."),
    device: Optional[str] = device_option(),
    dtype: Optional[str] = dtype_option(),
    attn: Optional[str] = attn_option(),
) -> None:
    """Run the embedded default model on a shipped example image (no download)."""
    from .demo import run_demo

    _guard(lambda: run_demo(out, backend=backend, echo=typer.echo,
                            options={"device": device, "dtype": dtype, "attn": attn}))


@app.command("export-gguf")
def export_gguf(
    checkpoint: Path = typer.Argument(..., help="Hugging Face Qwen2.5-VL checkpoint folder (e.g. trained by awares_train)."),
    out: Path = typer.Option(..., "--out", help="Folder for model.gguf and mmproj.gguf."),
    quant: str = typer.Option("q8_0", "--quant", help="Language-model weights: q8_0, q4_k_m or f16 (mmproj stays f16)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Converter sources and venv (default ~/.cache/awares/gguf)."),
) -> None:
    """Convert a checkpoint to GGUF with llama.cpp's own converter, for the llamacpp backend."""
    from .gguf import export_gguf as _export

    def run() -> None:
        res = _export(checkpoint, out, quant=quant, cache_dir=cache_dir)  # type: ignore[arg-type]
        typer.echo(f"model:  {res.model}")
        typer.echo(f"mmproj: {res.mmproj}")
        typer.echo(f"try:    awares ask IMAGE QUESTION --backend llamacpp:{res.model} --mmproj {res.mmproj}")

    _guard(run)


@app.command()
def ui(
    backend: Optional[str] = typer.Option(None, "--backend", help="Preselected backend spec (default: the embedded model)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (0.0.0.0 exposes the page to your network)."),
    port: int = typer.Option(7860, "--port", help="Port to serve on."),
    timeout: float = typer.Option(180.0, "--timeout", help="Default time limit per question, in seconds."),
    device: Optional[str] = device_option(),
    dtype: Optional[str] = dtype_option(),
    attn: Optional[str] = attn_option(),
) -> None:
    """Serve the web demo: upload an image, ask, and see where the model looked and what it cost."""
    from .backends import spec_with_options
    from .errors import require_extra

    def run() -> None:
        # The flags go into the preselected spec (checked here, before the page starts), so the menu shows them.
        spec = spec_with_options(backend, device=device, dtype=dtype, attn=attn)
        require_extra("gradio", "ui")
        from .ui import serve

        typer.echo(f"awares ui: http://{host}:{port}  (Ctrl+C to stop)", err=True)
        serve(spec, host=host, port=port, timeout_s=timeout)

    _guard(run)


SERVE_TOKEN_ENV = "AWARES_SERVE_TOKEN"


@app.command()
def serve(
    backend: Optional[str] = typer.Option(None, "--backend", help="Model backend: transformers:PATH, llamacpp:GGUF, "
                                          "openai:URL#MODEL (an upstream vLLM / llama.cpp / Ollama server); default: "
                                          "the embedded model."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but loopback needs a token."),
    port: int = typer.Option(8100, "--port", help="Port to serve on."),
    token: Optional[str] = typer.Option(None, "--token", help=f"Bearer token clients must send (visible in ps: prefer "
                                        f"${SERVE_TOKEN_ENV} or --token-file)."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="Read the bearer token from this file."),
    model_name: str = typer.Option("awares", "--model-name", help="The model id clients see (requests may name any)."),
    card: Optional[str] = typer.Option(None, "--card", help="The model's awares.json (or its folder), or a built-in "
                                       "card: the prompt, crop set and request format it was trained with (upstream "
                                       "servers cannot tell)."),
    mode: str = typer.Option("awares", "--mode", help="Default loop mode: awares, lowres, fullres, all_crops, "
                             "full_on_request (a request may pick awares, lowres or fullres)."),
    max_tokens: int = typer.Option(128, "--max-tokens", help="Tokens per model call when a request sets none."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds allowed per model call, for backends "
                                            "that can stop one (llamacpp:, openai:); beyond it: 504."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Crop loops in flight at once; default 16 "
                                              "for openai: upstreams (they batch), 1 for local models."),
    queue: int = typer.Option(64, "--queue", help="Requests waiting for a slot; beyond it: 429 with Retry-After."),
    max_body_mb: float = typer.Option(32.0, "--max-body-mb", help="Largest request body in MiB; beyond it: 413."),
    allow_urls: bool = typer.Option(False, "--allow-urls", help="Download http(s) image URLs (public hosts only); "
                                    "off: images must come as data: URIs."),
    allowed_origin: Optional[list[str]] = typer.Option(None, "--allowed-origin", metavar="ORIGIN", help="An origin browser pages may "
                                                       "call from (repeatable; none by default)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level."),
    device: Optional[str] = device_option(),
    dtype: Optional[str] = dtype_option(),
    attn: Optional[str] = attn_option(),
) -> None:
    """Serve an OpenAI-compatible chat API whose answers come from the AwaRes crop loop."""
    from .adapters.http_guard import is_loopback, read_token
    from .errors import require_extra

    def run() -> None:
        secret = read_token(token, env=SERVE_TOKEN_ENV, file=token_file)
        if not is_loopback(host) and not secret:
            raise ValueError(f"refusing to serve on {host} without a bearer token: anyone who can reach it could use "
                             f"the model. Set ${SERVE_TOKEN_ENV} or --token-file (or bind to 127.0.0.1)")
        for module in ("fastapi", "uvicorn", "prometheus_client"):
            require_extra(module, "serve", package=module.replace("_", "-"))
        from .backends import resolve_backend
        from .backends.cards import load_card
        from .episode import CropOptions
        from .images import ImageLimits
        from .serve import GatewayConfig
        from .serve.app import build_app
        from .serve.server import run_gateway

        upstream = (backend or "").startswith("openai:")
        slots = concurrency if concurrency is not None else (16 if upstream else 1)
        from .backends.base import GenerationSettings

        generation = GenerationSettings(max_new_tokens=max_tokens, timeout_s=timeout) if timeout else None
        crop = CropOptions(mode=mode, max_new_tokens=max_tokens,  # type: ignore[arg-type]  # a bad mode: ValueError
                           generation=generation)
        config = GatewayConfig(model_name=model_name, token=secret, concurrency=slots, queue=queue,
                               max_body_bytes=int(max_body_mb * 2**20), image_limits=ImageLimits(allow_urls=allow_urls),
                               crop=crop, allowed_origins=tuple(allowed_origin or ()))
        options: dict[str, Any] = {}
        if upstream and "concurrency=" not in (backend or ""):
            options["concurrency"] = slots  # as many calls to the upstream as loops in flight
        named_card = load_card(card) if card is not None else None
        if named_card is not None and (backend or "").split(":")[0] in ("transformers", "hf", "openai"):
            options["model_card"] = named_card
        typer.echo(f"awares serve: loading {backend or 'the embedded model'} ...", err=True)
        be = resolve_backend(backend, **options, device=device, dtype=dtype, attn=attn)
        if named_card is not None:
            be.model_card = named_card
        gateway_app = build_app(config, be)
        typer.echo(f"awares serve: http://{host}:{port}/v1  model {model_name!r}, {slots} loop(s) in flight, queue "
                   f"{queue}, token {'required' if secret else 'off (loopback only)'}  (Ctrl+C to stop)", err=True)
        run_gateway(gateway_app, host=host, port=port, log_level=log_level)

    _guard(run)


def main() -> None:
    """Entry point of the ``awares`` console script."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
