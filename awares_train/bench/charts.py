"""Charts: bar and line charts whose values are printed as small labels, and legends.

Values can only be read from their labels: bars and points are drawn to scale but there is no value axis, so
a low-res view shows which bar is tallest and not what it says. The evidence label is placed first (so that it
maps to the target crop), then the chart is built around it: the bar or point under the label sets the
scale, the slot grid is aligned so that a slot's centre lies under the label, and every other bar, point,
label and the legend is kept off the evidence.
"""

from __future__ import annotations

import re

from PIL import Image, ImageDraw

from . import content as C
from .canvas import Block, RenderContext, Rendered, draw_text, place_blocks, text_box
from .placement import maps_to, overlaps, place_box

__all__ = ["render_chart", "templates"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def templates(vocabulary: str, pair: bool) -> tuple[str, ...]:
    """Question templates of charts; two-crop items add two labels, which the tiny vocabulary cannot."""
    if pair:
        return () if vocabulary == "tiny" else ("chart-bar-sum",)
    if vocabulary == "tiny":
        return ("chart-bar-value", "chart-legend")
    return ("chart-bar-value", "chart-legend", "chart-line-max")


class _Chart:
    """Geometry shared by the chart templates of one item."""

    def __init__(self, ctx: RenderContext) -> None:
        rng, W, H, f = ctx.rng, ctx.width, ctx.height, ctx.font_size
        self.ctx, self.f = ctx, f
        self.m = max(6, round(0.04 * min(W, H)))
        self.gap = max(2, f // 4)
        self.lh = text_box("0", f)[1]
        self.title_size = max(8, round(f * rng.uniform(1.3, 1.8)))
        self.title_h = text_box("Hg", self.title_size)[1]
        ticks = not ctx.tiny
        self.tick_h = text_box("Jg", f)[1] + 2 * self.gap if ticks else 0
        self.x0 = self.m + 2
        self.x1 = W - self.m
        # the plot reaches up to the top margin; the title is drawn only where nothing of the plot is
        self.top = self.m + self.lh
        self.base = H - self.m - self.tick_h
        self.min_bar = max(4, f // 2)
        self.vmax = rng.uniform(40, 950) if not ctx.tiny else float(rng.randint(60, 999))

    def fmt(self, v: float) -> str:
        return str(max(1, int(round(v)))) if self.ctx.tiny else f"{max(v, 0.1):.1f}"

    def label_bound(self) -> int:
        s = self.fmt(self.vmax)
        return max(text_box(re.sub(r"\d", d, s), self.f)[0] for d in "0123456789") + 2

    @property
    def plot_h(self) -> int:
        return self.base - self.top

    def value_at(self, y_top: float) -> float:
        return self.vmax * (self.base - y_top) / self.plot_h

    def y_for(self, v: float) -> float:
        return self.base - v / self.vmax * self.plot_h

    def label_area(self) -> tuple[int, int, int, int]:
        return (self.x0, self.top, self.x1, self.base - self.min_bar - self.gap)

    def evidence_label(self, target: str, avoid: list) -> tuple[tuple[int, int, int, int], float, str] | None:
        """Place a value label mapping to ``target``; the value follows from where it lands."""
        ctx = self.ctx
        prov = self.fmt(self.vmax * ctx.rng.uniform(0.2, 0.95))
        w, h, _, _ = text_box(prov, self.f)
        box = place_box(ctx.rng, ctx.width, ctx.height, (w, h), target, area=self.label_area(), avoid=avoid,
                        pad=self.f)
        if box is None:
            return None
        value = self.value_at(box[3] + self.gap)
        text = self.fmt(value)
        w2, h2, _, _ = text_box(text, self.f)
        cx = (box[0] + box[2]) // 2
        box = (cx - w2 // 2, box[1], cx - w2 // 2 + w2, box[1] + h2)
        if maps_to(box, ctx.width, ctx.height) != [target]:
            return None
        return box, value, text

    def slots_through(self, centres: list[float], s_min: float, n_min: int = 2,
                      n_max: int | None = None) -> tuple[float, list[float]] | None:
        """A regular grid of ``n_min``-``n_max`` slots (width >= ``s_min``) across the plot, with a slot centred
        on each of ``centres``; the grid spans the plot's width within a slot and a half at each end."""
        n_max = min(n_max or len(self.ctx.colors), len(self.ctx.colors) if n_max is None else n_max)
        lo, hi = min(centres), max(centres)
        options = []
        for n in range(n_min, n_max + 1):
            for k in range(n):  # slot of the leftmost centre
                if len(centres) == 1:
                    spans = [(lo - self.x0) / (k + 0.5)]
                else:
                    spans = [(hi - lo) / j for j in range(1, n - k)]
                for s in spans:
                    g0 = lo - (k + 0.5) * s
                    end = g0 + n * s
                    if s >= s_min and self.x0 - 1e-6 <= g0 <= self.x0 + 1.5 * s and self.x1 - 1.5 * s <= end <= self.x1:
                        options.append((s, g0, n))
        if not options:
            return None
        s, g0, n = self.ctx.rng.choice(options)
        return s, [g0 + (i + 0.5) * s for i in range(n)]

    def legend_block(self, entries: list[tuple[str, str]], asked: int) -> Block:
        f, gap, lh = self.f, self.gap, self.lh
        sw = lh
        line_h = int(text_box("Hg", f)[1] * 1.5) + 2
        inner = max(sw + gap * 2 + text_box(t, f)[0] for _, t in entries)
        pad = max(3, f // 3)
        colors = self.ctx.colors

        height = (len(entries) - 1) * line_h + max(sw, text_box("Hg", f)[1]) + 2 * pad

        def draw(d: ImageDraw.ImageDraw, ox: int, oy: int) -> None:
            d.rectangle((ox, oy, ox + inner + 2 * pad, oy + height), fill=(255, 255, 255), outline=(150, 150, 150))
            for i, (c, t) in enumerate(entries):
                x, y = ox + pad, oy + pad + i * line_h
                d.rectangle((x, y, x + sw - 1, y + sw - 1), fill=colors[c])
                draw_text(d, x + sw + 2 * gap, y, t, f)

        tw, th, _, _ = text_box(entries[asked][1], f)
        ey = pad + asked * line_h
        ev = (pad, ey, pad + sw + 2 * gap + tw, ey + max(sw, th))
        return Block(inner + 2 * pad + 1, height + 1, ev, draw)


def _draw_frame(d: ImageDraw.ImageDraw, ch: _Chart, title: str, occupied: list,
                segments: list | None = None) -> None:
    tw, th, _, _ = text_box(title, ch.title_size)
    x = ch.x0 + 3 * ch.gap  # right of the value axis
    tbox = (x, ch.m, x + tw, ch.m + th)
    clear = tbox[2] < ch.x1 and not any(overlaps(tbox, b, ch.gap) for b in occupied) and not any(
        _segment_hits(p, q, tbox, ch.gap) for p, q in segments or [])
    if clear:
        draw_text(d, x, ch.m, title, ch.title_size, fill=(30, 30, 50))
    d.line((ch.x0, ch.base, ch.x1, ch.base), fill=(60, 60, 60), width=max(1, ch.f // 12))
    d.line((ch.x0, ch.top, ch.x0, ch.base), fill=(60, 60, 60), width=max(1, ch.f // 12))


def _bars(ctx: RenderContext, ch: _Chart, template: str) -> Rendered | None:
    rng, f = ctx.rng, ch.f
    names = list(ctx.colors)
    legend_entries: list[tuple[str, str]] | None = None
    legend_at: tuple[int, int] | None = None
    obstacles: list = []
    evidence: list = []
    fixed: dict[int, tuple[float, str]] = {}  # slot index -> (value, label) of evidence bars
    if template == "chart-legend":
        s_min = max(ch.label_bound() * 1.2, 1.5 * f)
        span = ch.x1 - ch.x0
        if s_min * 2 > span:
            return None
        s = rng.uniform(s_min, min(2.2 * s_min, span / 2))
        centres = [ch.x0 + (i + 0.5) * s for i in range(int(span / s))]
        fits = int(0.6 * ch.plot_h / (text_box("Hg", f)[1] * 1.5 + 2))  # legend rows that leave room for bars
        if fits < 2:
            return None
        n = rng.randint(2, max(2, min(6, len(names), len(centres), fits)))
        colors = rng.sample(names, k=n)
        labels = ([C.code(rng) for _ in colors] if ctx.tiny else rng.sample(C.SERIES, k=n))
        legend_entries = list(zip(colors, labels))
        asked = rng.randrange(n)
        block = ch.legend_block(legend_entries, asked)
        area = (ch.x0 + ch.gap, ch.top, ch.x1, ctx.height - ch.m)
        spot = place_blocks(ctx, [block], area, pad=f)
        if spot is None:
            return None
        legend_at = spot[0]
        lbox, ev = block.at(*legend_at)
        if lbox[3] > ch.base - ch.gap or (lbox[1] + lbox[3]) / 2 > (ch.top + ch.base) / 2:
            ch.base = lbox[1] - ch.gap - ch.tick_h  # a low legend goes under the plot, which ends above it
            if ch.plot_h < 3 * ch.lh:
                return None
        else:
            obstacles.append(lbox)  # a high legend sits in the plot; bars under it stay below
        evidence.append(ev)
        bar_colors = colors
    else:
        labels_placed = []
        for t in ctx.targets:
            got = ch.evidence_label(t, [b for b, _, _ in labels_placed])
            if got is None:
                return None
            labels_placed.append(got)
        grid = ch.slots_through([(b[0] + b[2]) / 2 for b, _, _ in labels_placed], max(ch.label_bound() * 1.2, 1.5 * f))
        if grid is None:
            return None
        s, centres = grid
        for box, value, text in labels_placed:
            cx = (box[0] + box[2]) / 2
            fixed[min(range(len(centres)), key=lambda i: abs(centres[i] - cx))] = (value, text)
            evidence.append(box)
        bar_colors = rng.sample(names, k=len(centres))
    bw = s * rng.uniform(0.45, 0.7)
    bars: list[tuple[tuple[float, float, float, float], str, str, tuple[int, int, int, int]]] = []
    color_iter = iter(bar_colors)
    slot_order = list(range(len(centres)))
    if legend_entries is not None:
        rng.shuffle(slot_order)
    for i in slot_order:
        cx = centres[i]
        if i in fixed:
            value, text = fixed[i]
        else:
            lo_top = ch.top + ch.lh + ch.gap
            for ob in obstacles:  # stay under the legend
                if ob[0] - ch.gap < cx + max(bw, ch.label_bound()) / 2 and ob[2] + ch.gap > cx - max(bw, ch.label_bound()) / 2:
                    lo_top = max(lo_top, ob[3] + 2 * ch.gap + ch.lh)
            if lo_top > ch.base - ch.min_bar:
                continue
            top = rng.uniform(lo_top, ch.base - ch.min_bar)
            value = ch.value_at(top)
            text = ch.fmt(value)
        try:
            color = next(color_iter)
        except StopIteration:
            break
        top = ch.y_for(value) if i not in fixed else ch.base - (value / ch.vmax) * ch.plot_h
        w, h, _, _ = text_box(text, f)
        lbox = (int(round(cx - w / 2)), int(round(top - ch.gap - h)), int(round(cx - w / 2)) + w, int(round(top - ch.gap)))
        if i in fixed:
            lbox = next(b for b in evidence if abs((b[0] + b[2]) / 2 - cx) <= 1)
        bars.append(((cx - bw / 2, top, cx + bw / 2, ch.base), color, text, lbox))
    if legend_entries is not None and len(bars) < len(legend_entries):
        return None  # every legend entry needs its bar
    # evidence labels must stay clear of every other bar, label and the legend
    for ev in evidence:
        for rect, _, _, lb in bars:
            if lb != ev and (overlaps(ev, lb, 1) or overlaps(ev, rect, 1)):
                return None
    img = Image.new("RGB", (ctx.width, ctx.height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    title = "".join(rng.choice("abcdefghij") for _ in range(6)) if ctx.tiny else rng.choice(
        ("Sales by product", "Units shipped", "Revenue by line", "Orders per product", "Output by plant"))
    _draw_frame(d, ch, title, [b[0] for b in bars] + [b[3] for b in bars] + obstacles)
    year = rng.randint(2004, 2016)
    for rect, color, text, lbox in bars:
        d.rectangle(tuple(int(round(v)) for v in rect), fill=ctx.colors[color])
        draw_text(d, lbox[0], lbox[1], text, f)
        if not ctx.tiny:
            slot = min(range(len(centres)), key=lambda i: abs(centres[i] - (rect[0] + rect[2]) / 2))
            tick = str(year + slot)
            tw = text_box(tick, f)[0]
            draw_text(d, (rect[0] + rect[2]) / 2 - tw / 2, ch.base + ch.gap, tick, f, fill=(70, 70, 70))
    if legend_entries is not None:
        block.draw_fn(d, *legend_at)
        asked_color, asked_label = legend_entries[asked]
        if ctx.tiny:
            q = f"What is the legend code of the {asked_color} bar?"
            return Rendered(img, q, [asked_label], "exact", "chart-legend", "code", evidence)
        q = f"What does the legend call the {asked_color} bar?"
        return Rendered(img, q, [asked_label], "anls", "chart-legend", "name", evidence)
    by_label = {lb: (color, text) for _, color, text, lb in bars}
    asked = [by_label[ev] for ev in evidence]
    if ctx.pair:
        total = sum(float(t) for _, t in asked)
        q = f"What is the sum of the values of the {asked[0][0]} and the {asked[1][0]} bars?"
        return Rendered(img, q, [f"{total:.1f}"], "relaxed", "chart-bar-sum", "number", evidence)
    q = f"What is the value of the {asked[0][0]} bar?"
    return Rendered(img, q, [asked[0][1]], "exact" if ctx.tiny else "relaxed", "chart-bar-value",
                    "code" if ctx.tiny else "number", evidence)


def _segment_hits(p: tuple[float, float], q: tuple[float, float], box, pad: float) -> bool:
    """Whether segment p-q comes within ``pad`` of ``box`` (sampled; segments are short)."""
    steps = max(2, int(max(abs(q[0] - p[0]), abs(q[1] - p[1])) / 2))
    for k in range(steps + 1):
        x, y = p[0] + (q[0] - p[0]) * k / steps, p[1] + (q[1] - p[1]) * k / steps
        if box[0] - pad <= x <= box[2] + pad and box[1] - pad <= y <= box[3] + pad:
            return True
    return False


def _lines(ctx: RenderContext, ch: _Chart) -> Rendered | None:
    rng, f = ctx.rng, ch.f
    mr = max(2, f // 4)
    got = ch.evidence_label(ctx.targets[0], [])
    if got is None:
        return None
    ebox, evalue, etext = got
    grid = ch.slots_through([(ebox[0] + ebox[2]) / 2], max(ch.label_bound() * 1.15, 2.2 * f), 4, 10)
    if grid is None:
        return None
    s, centres = grid
    k_max = min(range(len(centres)), key=lambda i: abs(centres[i] - (ebox[0] + ebox[2]) / 2))
    colors = rng.sample(list(ctx.colors), k=rng.randint(1, 2))
    series: list[list[float]] = []
    main = [evalue if i == k_max else evalue * rng.uniform(0.1, 0.85) for i in range(len(centres))]
    series.append(main)
    for _ in colors[1:]:
        for _try in range(20):
            vals = [ch.vmax * rng.uniform(0.05, 0.95) for _ in centres]
            pts = [(cx, ch.y_for(v)) for cx, v in zip(centres, vals)]
            if not any(_segment_hits(a, b, ebox, ch.gap + mr) for a, b in zip(pts, pts[1:])):
                series.append(vals)
                break
    colors = colors[: len(series)]
    # the evidence label sits above the main series' maximum; its own neighbours are lower, so no line crosses it
    img = Image.new("RGB", (ctx.width, ctx.height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    pts_all = [[(cx, ch.y_for(v)) for cx, v in zip(centres, vals)] for vals in series]
    segs = [seg for pts in pts_all for seg in zip(pts, pts[1:])]
    points = [(x - mr, y - mr - ch.gap - ch.lh, x + mr, y + mr) for pts in pts_all for x, y in pts]
    _draw_frame(d, ch, rng.choice(("Monthly output", "Visitors per month", "Average price", "Orders by month")),
                [ebox] + points, segs)
    start = rng.randrange(12)
    for i, cx in enumerate(centres):
        tick = _MONTHS[(start + i) % 12]
        draw_text(d, cx - text_box(tick, f)[0] / 2, ch.base + ch.gap, tick, f, fill=(70, 70, 70))
    taken = [ebox]
    width = max(1, f // 6)
    for color, vals in zip(colors, series):
        pts = [(cx, ch.y_for(v) if not (vals is main and i == k_max) else ebox[3] + ch.gap + mr)
               for i, (cx, v) in enumerate(zip(centres, vals))]
        d.line(pts, fill=ctx.colors[color], width=width)
        for i, (x, y) in enumerate(pts):
            d.ellipse((x - mr, y - mr, x + mr, y + mr), fill=ctx.colors[color])
            if vals is main and i == k_max:
                continue
            text = ch.fmt(vals[i])
            w, h, _, _ = text_box(text, f)
            lb = (int(x - w / 2), int(y - mr - ch.gap - h), int(x - w / 2) + w, int(y - mr - ch.gap))
            if lb[1] < ch.top - ch.lh or any(overlaps(lb, t, ch.gap) for t in taken):
                continue
            draw_text(d, lb[0], lb[1], text, f)
            taken.append(lb)
    draw_text(d, ebox[0], ebox[1], etext, f)
    q = f"What is the highest value of the {colors[0]} line?"
    return Rendered(img, q, [etext], "relaxed", "chart-line-max", "number", [ebox])


def render_chart(ctx: RenderContext) -> Rendered | None:
    """Draw one chart item (see the module docstring), or ``None`` when its layout does not fit."""
    ch = _Chart(ctx)
    if ch.plot_h < 3 * ch.lh:
        return None
    if ctx.template not in templates(ctx.profile.vocabulary, ctx.pair):
        raise ValueError(f"chart template {ctx.template!r} does not fit this item")
    if ctx.template == "chart-line-max":
        return _lines(ctx, ch)
    return _bars(ctx, ch, ctx.template)
