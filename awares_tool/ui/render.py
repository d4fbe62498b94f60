"""Text the web demo shows for a :class:`~awares_tool.episode.result.CropResult`: answer, token ledger, timings.

Plain Markdown built from the result alone, so the page, the tests and a log line all read the same words.
"""

from __future__ import annotations

from collections.abc import Sequence

from awares_tool.crops import FULL_IMAGE, get_crop_set
from ..errors import AwaresError, CropSetError
from awares_tool.episode.result import CropResult

__all__ = ["answer_markdown", "ledger_markdown", "timings_markdown", "comparison_markdown", "region_labels"]


def region_labels(res: CropResult) -> list[str]:
    """Each fetched region as ``name (description)``, e.g. ``1 (top-right quarter)``."""
    try:
        cs = get_crop_set(res.crop_set or None)
        desc = {r.name: r.description for r in cs.regions}
    except (AwaresError, CropSetError):  # a crop-set file that moved since the run: names still say enough
        desc = {}
    desc.setdefault(FULL_IMAGE, "the whole image at full resolution")
    return [f"{n} ({desc[n]})" if n in desc else n for n in res.regions]


def answer_markdown(res: CropResult) -> str:
    """The answer, then where the model looked (or that it needed no crop)."""
    answer = res.answer.strip() or "(empty answer)"
    lines = [f"### Answer: {answer}"]
    if not res.answered:
        lines.append("The model gave no final answer (it kept requesting crops); shown is its last request.")
    elif res.forced_answer:
        lines.append("The model was told to answer after its last allowed crop round.")
    if res.mode in ("lowres", "fullres"):
        view = "full-resolution image" if res.mode == "fullres" else "low-res view"
        lines.append(f"Mode `{res.mode}`: answered from the {view} only.")
    elif res.regions:
        lines.append("Fetched regions: " + ", ".join(region_labels(res)))
    else:
        lines.append("Fetched regions: none, answered from the low-res view")
    for r in res.requests:
        if r.fallback:
            lines.append(f"Request {r.round} `{r.request_text[:120]}` fell back to `{r.fallback}`.")
        if r.invalid:
            lines.append(f"Request {r.round} named regions the crop set lacks: {', '.join(r.invalid)} (dropped).")
    return "\n\n".join(lines)


def _fmt_tokens(n: int | None) -> str:
    return f"{n:,}" if n is not None else "?"


def ledger_markdown(res: CropResult) -> str:
    """Visual tokens of each image sent against the full image at native resolution, and the RTR."""
    led = res.tokens
    first = "full image" if res.mode == "fullres" else "low-res view"
    w, h = res.first_view_size
    rows = [f"| {first} | {w}x{h} | {_fmt_tokens(led.first_view)} |"]
    names = [n for r in res.requests for n in r.fetched]
    boxes = {n: b for r in res.requests for n, b in r.boxes.items()}
    for i, name in enumerate(names):
        box = boxes.get(name)
        size = f"{box[2] - box[0]}x{box[3] - box[1]}" if box else "?"
        count = led.crops[i] if i < len(led.crops) else None
        rows.append(f"| crop {name} | {size} | {_fmt_tokens(count)} |")
    iw, ih = res.image_size
    table = "\n".join(
        ["| image sent | size | visual tokens |", "|---|---|---|", *rows,
         f"| **total spent** | | **{_fmt_tokens(led.spent)}** |",
         f"| full resolution (baseline) | {iw}x{ih} | {_fmt_tokens(led.full)} |"]
    )
    if led.rtr is not None:
        source = "counted by the backend" if led.source == "backend" else "estimated for the model family"
        head = f"**RTR {led.rtr:.3f}**: {led.spent:,} of {led.full:,} full-resolution visual tokens ({source})"
    else:
        head = "**RTR unknown**: this backend reports no visual-token counts"
    return f"{head}; pixel ratio {led.pixel_ratio:.3f}\n\n{table}"


def timings_markdown(res: CropResult) -> str:
    """Time per model turn (prefill and decode) and the total wall time."""
    if not res.timings:
        return f"Total {res.wall_s:.3f} s (no model turn timed)."
    rows = [
        f"| {t.turn} | {t.prefill_s:.3f} | {t.decode_s:.3f} | {t.prefill_s + t.decode_s:.3f} | "
        f"{t.prompt_tokens} | {t.cached_tokens} | {t.completion_tokens} |"
        for t in res.timings
    ]
    return "\n".join(
        [f"Total {res.wall_s:.3f} s over {len(res.timings)} model turn(s).", "",
         "| turn | prefill s | decode s | turn s | prompt tokens | cached tokens | new tokens |",
         "|---|---|---|---|---|---|---|", *rows]
    )


def comparison_markdown(results: Sequence[CropResult]) -> str:
    """One table row per run (full resolution vs AwaRes): answer, regions, visual tokens, RTR, time."""
    rows = []
    for res in results:
        regions = ", ".join(res.regions) if res.mode not in ("fullres", "lowres") else "-"
        rtr = f"{res.tokens.rtr:.3f}" if res.tokens.rtr is not None else "?"
        answer = (res.answer.strip() or "(empty)").replace("|", "\\|")
        rows.append(
            f"| {res.mode} | {answer} | {regions or 'none'} | {_fmt_tokens(res.tokens.spent)} | {rtr} | {res.wall_s:.3f} |"
        )
    table = "\n".join(["| mode | answer | regions | visual tokens | RTR | time s |", "|---|---|---|---|---|---|", *rows])
    by_mode = {r.mode: r for r in results}
    full, awares = by_mode.get("fullres"), by_mode.get("awares")
    summary = ""
    if full is not None and awares is not None:
        same = full.answer.strip().lower() == awares.answer.strip().lower()
        summary = f"Answers {'agree' if same else 'differ'}."
        if full.tokens.spent and awares.tokens.spent is not None:
            summary += f" AwaRes used {awares.tokens.spent / full.tokens.spent:.0%} of the full-resolution visual tokens"
            summary += f" and {awares.wall_s:.3f} s against {full.wall_s:.3f} s."
    return f"{table}\n\n{summary}".strip()
