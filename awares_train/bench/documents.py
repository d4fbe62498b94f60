"""Documents: pages of filler paragraphs around a form field, a table or small-print notes.

The evidence block (fields, a table or notes) is placed first so that the asked line maps to the target crop;
filler paragraphs then flow around it, a title goes on top where there is room. All evidence text of an item
shares one font size; the filler is drawn near that size, so a page whose evidence is small is small print
throughout and nothing but the pixels says whether a crop is needed.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from PIL import Image, ImageDraw

from . import content as C
from .placement import overlaps
from .canvas import Block, RenderContext, Rendered, draw_text, flow_filler, place_blocks, text_box, word_length

__all__ = ["render_document", "templates", "FIELDS"]


def templates(vocabulary: str, pair: bool) -> tuple[str, ...]:
    """Question templates of documents (repeated names weigh more)."""
    if vocabulary == "tiny":
        return ("doc-tiny-larger",) if pair else ("doc-tiny-field",)
    return ("doc-field-pair",) if pair else ("doc-field", "doc-field", "doc-table", "doc-note")

# label, question, noun phrase (for two-field questions), value maker, metric, answer type
Field = tuple[str, str, str, Callable[[random.Random], str], str, str]
FIELDS: tuple[Field, ...] = (
    ("Invoice No.", "What is the invoice number?", "invoice number", lambda r: C.code(r, 5), "exact", "code"),
    ("Order No.", "What is the order number?", "order number", lambda r: C.code(r, 6), "exact", "code"),
    ("Account", "What is the account number?", "account number", lambda r: C.code(r, 7), "exact", "code"),
    ("Prepared by", "Who prepared the document?", "", C.person, "anls", "name"),
    ("Approved by", "Who approved the document?", "", C.person, "anls", "name"),
    ("Project", "What is the project name?", "project name", C.project, "anls", "phrase"),
    ("Amount due", "What is the amount due?", "amount due", C.money, "relaxed", "number"),
    ("Issue date", "What is the issue date?", "issue date", C.date, "anls", "phrase"),
)
_COLUMNS = (("Qty", "quantity", lambda r: str(r.randint(2, 480)), "exact"),
            ("Unit price", "unit price", lambda r: f"{r.randint(1, 240)}.{r.randint(0, 99):02d}", "relaxed"),
            ("Weight (kg)", "weight", lambda r: f"{r.randint(1, 900)}.{r.randint(0, 9)}", "relaxed"),
            ("Total", "total", lambda r: f"{r.randint(100, 9999):,}.{r.randint(0, 99):02d}", "relaxed"))


def _lines_block(lines: list[list[tuple[str, tuple[int, int, int]] | tuple[int, tuple[int, int, int]]]],
                 size: int, asked: int) -> Block:
    """A block of lines; each line is a list of text runs or colour swatches (an int is a swatch side)."""
    gap = max(2, text_box("0", size)[0] // 2)
    lh = text_box("Hg", size)[1]
    line_h = int(lh * 1.6) + 2
    widths = []
    for i, line in enumerate(lines):
        x = 0
        for item, _ in line:
            x += (item if isinstance(item, int) else text_box(item, size)[0]) + gap
        widths.append(x - gap)

    def draw(d: ImageDraw.ImageDraw, ox: int, oy: int) -> None:
        for i, line in enumerate(lines):
            x, y = ox, oy + i * line_h
            for item, col in line:
                if isinstance(item, int):
                    d.rectangle((x, y, x + item - 1, y + item - 1), fill=col)
                    x += item + gap
                else:
                    draw_text(d, x, y, item, size, fill=col)
                    x += text_box(item, size)[0] + gap

    # the asked line's ink box: measured per run, so it spans exactly the drawn pixels
    y = asked * line_h
    bottom = max(item if isinstance(item, int) else text_box(item, size)[1] for item, _ in lines[asked])
    ev = (0, y, widths[asked], y + bottom)
    return Block(max(widths), len(lines) * line_h, ev, draw)


def _extra_rows(ctx: RenderContext) -> int:
    """How many lines besides the asked one a block gets: up to 3, fewer where the page is short for the text."""
    line_h = text_box("Hg", ctx.font_size)[1] * 1.6 + 2
    fit = int(0.4 * ctx.height / line_h) - 1
    return ctx.rng.randint(min(1, max(fit, 0)), max(0, min(3, fit)))


def _field_block(ctx: RenderContext, asked: Field, value: str) -> Block:
    rng, size = ctx.rng, ctx.font_size
    others = [f for f in FIELDS if f[0] != asked[0]]
    rng.shuffle(others)
    rows = [(asked, value)] + [(f, f[3](rng)) for f in others[: _extra_rows(ctx)]]
    rng.shuffle(rows)
    lines = [[(f"{f[0]}: {v}", C.INK)] for f, v in rows]
    return _lines_block(lines, size, [f[0] for f, _ in rows].index(asked[0]))


def _tiny_field_block(ctx: RenderContext, color: str, value: str, used: set[str]) -> Block:
    """Tiny vocabulary: each line is a colour swatch and a 3-digit code; no colour occurs twice on a page."""
    rng, size = ctx.rng, ctx.font_size
    others = [c for c in ctx.colors if c not in used]
    rng.shuffle(others)
    rows = [(color, value)] + [(c, C.code(rng)) for c in others[: _extra_rows(ctx)]]
    rng.shuffle(rows)
    used.update(c for c, _ in rows)
    sw = ctx.digit_px
    lines = [[(sw, ctx.colors[c]), (v, C.INK)] for c, v in rows]
    return _lines_block(lines, size, [c for c, _ in rows].index(color))


def _table_block(ctx: RenderContext) -> tuple[Block, str, str, str]:
    rng, size = ctx.rng, ctx.font_size
    cols = rng.sample(_COLUMNS, k=rng.randint(2, 3))
    items = rng.sample(C.PRODUCTS, k=rng.randint(3, 5))
    cells = [[c[2](rng) for c in cols] for _ in items]
    header = ["Item"] + [c[0] for c in cols]
    rows = [header] + [[it] + vals for it, vals in zip(items, cells)]
    pad = max(3, size // 3)
    lh = text_box("Hg", size)[1]
    col_w = [max(text_box(r[j], size)[0] for r in rows) + 2 * pad for j in range(len(header))]
    row_h = lh + 2 * pad
    xs = [0]
    for w in col_w:
        xs.append(xs[-1] + w)
    ri, ci = rng.randrange(len(items)), rng.randrange(len(cols))

    def cell_ink(r: int, c: int) -> tuple[int, int, int, int]:
        w, h, _, _ = text_box(rows[r][c], size)
        x, y = xs[c] + pad, r * row_h + pad
        return (x, y, x + w, y + h)

    parts = [cell_ink(0, ci + 1), cell_ink(ri + 1, 0), cell_ink(ri + 1, ci + 1)]
    ev = (min(p[0] for p in parts), min(p[1] for p in parts), max(p[2] for p in parts), max(p[3] for p in parts))

    def draw(d: ImageDraw.ImageDraw, ox: int, oy: int) -> None:
        d.rectangle((ox, oy, ox + xs[-1], oy + row_h), fill=(225, 230, 238))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                draw_text(d, ox + xs[c] + pad, oy + r * row_h + pad, text, size)
            d.line((ox, oy + r * row_h, ox + xs[-1], oy + r * row_h), fill=(120, 120, 120))
        d.line((ox, oy + len(rows) * row_h, ox + xs[-1], oy + len(rows) * row_h), fill=(120, 120, 120))
        for x in xs:
            d.line((ox + x, oy, ox + x, oy + len(rows) * row_h), fill=(160, 160, 160))

    block = Block(xs[-1] + 1, len(rows) * row_h + 1, ev, draw)
    col = cols[ci]
    return block, f"What is the {col[1]} of {items[ri].lower()}?", cells[ri][ci], col[3]


def _notes_block(ctx: RenderContext) -> tuple[Block, str, str]:
    rng = ctx.rng
    first, k = rng.randint(1, 9), 1 + max(1, _extra_rows(ctx))
    pages = rng.sample(range(12, 480), k=k)
    lines = [[(f"{first + i}. {rng.choice(C.SOURCES)}, p. {p}.", (70, 70, 70))] for i, p in enumerate(pages)]
    asked = rng.randrange(k)
    block = _lines_block(lines, ctx.font_size, asked)
    return block, f"Which page does note {first + asked} cite?", str(pages[asked])


def render_document(ctx: RenderContext) -> Rendered | None:
    """Draw one document item (see the module docstring), or ``None`` when its blocks do not fit."""
    rng, W, H = ctx.rng, ctx.width, ctx.height
    m = max(6, round(0.05 * min(W, H)))
    area = (m, m, W - m, H - m)
    evidence_color = None
    if ctx.template not in templates(ctx.profile.vocabulary, ctx.pair):
        raise ValueError(f"document template {ctx.template!r} does not fit this item")
    if ctx.tiny:
        colors = rng.sample(list(ctx.colors), k=len(ctx.targets))
        used: set[str] = set(colors)
        values = [C.code(rng) for _ in colors]
        while len(set(values)) < len(values):
            values = [C.code(rng) for _ in colors]
        blocks = [_tiny_field_block(ctx, c, v, used) for c, v in zip(colors, values)]
        if ctx.pair:
            question = f"What is the larger of the {colors[0]} and {colors[1]} codes?"
            answers, metric, template, atype = [str(max(int(v) for v in values))], "exact", "doc-tiny-larger", "code"
        else:
            question, answers = f"What is the {colors[0]} code?", [values[0]]
            metric, template, atype = "exact", "doc-tiny-field", "code"
        evidence_color = colors
    elif ctx.pair:
        fields = [f for f in FIELDS if f[2]]
        a, b = rng.sample(fields, k=2)
        va, vb = a[3](rng), b[3](rng)
        blocks = [_field_block(ctx, a, va), _field_block(ctx, b, vb)]
        question = f"What are the {a[2]} and the {b[2]}?"
        answers, metric, template, atype = [f"{va} and {vb}", f"{va}, {vb}"], "anls", "doc-field-pair", "phrase"
    else:
        choice = ctx.template
        if choice == "doc-field":
            f = rng.choice(FIELDS)
            value = f[3](rng)
            blocks = [_field_block(ctx, f, value)]
            question, answers, metric, template, atype = f[1], [value], f[4], f"doc-field:{f[0]}", f[5]
        elif choice == "doc-table":
            block, question, value, metric = _table_block(ctx)
            blocks, answers, template, atype = [block], [value], "doc-table", "number"
        else:
            block, question, value = _notes_block(ctx)
            blocks, answers, metric, template, atype = [block], [value], "exact", "doc-note", "code"
    offsets = place_blocks(ctx, blocks, area, pad=max(6, ctx.font_size))
    if offsets is None:
        return None
    img = Image.new("RGB", (W, H), rng.choice(((255, 255, 255), (250, 248, 242), (246, 248, 250))))
    d = ImageDraw.Draw(img)
    placed = [b.at(*o) for b, o in zip(blocks, offsets)]
    reserved = [box for box, _ in placed]
    body = max(6, round(ctx.font_size * rng.uniform(0.85, 1.15)))
    # a title on top, where it does not cover an evidence block
    title_size = max(8, round(body * rng.uniform(1.5, 2.2)))
    title = "Report" if ctx.tiny else rng.choice(("Quarterly Report", "Project Summary", "Invoice", "Statement",
                                                   "Site Inspection", "Annual Review", "Purchase Order"))
    tw, th, _, _ = text_box(title, title_size)
    tbox = (m, m, m + tw, m + th)
    if tw < W - 2 * m and not any(overlaps(tbox, r, body) for r in reserved):
        draw_text(d, m, m, title, title_size, fill=(20, 30, 60))
        reserved.append((tbox[0], tbox[1], tbox[2], tbox[3] + th // 2))
    # newspaper-like columns of at most ~70 characters, so a wide page is not one wall of text
    char_w = word_length("abcdefghijklmnopqrstuvwxyz", body) / 26
    columns = max(1, min(4, round((area[2] - area[0]) / (70 * char_w))))
    flow_filler(d, rng, area, reserved, body, ctx.profile.vocabulary, pad=max(6, body), columns=columns)
    for b, (ox, oy) in zip(blocks, offsets):
        b.draw_fn(d, ox, oy)
    extra = {"colors": evidence_color} if evidence_color else {}
    return Rendered(img, question, answers, metric, template, atype, [ev for _, ev in placed], extra)
