"""Scenes: small tagged objects, dotted cards and signs among distractors, on a simple landscape.

Each small object is a coloured shape with a white tag under it holding a code; a card holds a few dots; a
sign holds a word. Questions name the object by what a low-res view still shows (its colour and shape, a
card's colour, a sign's colour) and ask for what only enough pixels show (the code, the number of dots, the
word), or the other way round (the colour of the shape whose tag carries a given code). The object's size
follows the evidence font size, so a small tag comes with a small object.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from awares_train.data.synthetic import draw_shape

from . import content as C
from .canvas import Block, RenderContext, Rendered, draw_text, place_blocks, text_box
from .placement import overlaps

__all__ = ["render_scene", "templates"]


def templates(vocabulary: str, pair: bool) -> tuple[str, ...]:
    """Question templates of scenes."""
    if pair:
        return ("scene-larger-code",)
    return ("scene-code", "scene-color", "scene-count") + (() if vocabulary == "tiny" else ("scene-sign",))

_SKIES = ((196, 222, 240), (214, 226, 236), (232, 224, 210), (205, 215, 225))
_GROUNDS = ((170, 190, 150), (196, 184, 160), (160, 170, 175), (185, 200, 170))
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _tagged(ctx: RenderContext, shape: str, color: str, code: str) -> Block:
    """A shape with a white tag under it holding ``code``; the whole object is the evidence."""
    f, g = ctx.font_size, ctx.digit_px
    side = max(4, round(1.4 * g))
    tw, th, _, _ = text_box(code, f)
    pad = max(2, g // 4)
    tag_w, tag_h = tw + 2 * pad, th + 2 * pad
    width = max(side, tag_w)
    height = side + max(1, g // 5) + tag_h

    def draw(d: ImageDraw.ImageDraw, ox: int, oy: int) -> None:
        sx = ox + (width - side) // 2
        draw_shape(d, shape, (sx, oy, sx + side, oy + side), ctx.colors[color])
        tx, ty = ox + (width - tag_w) // 2, oy + height - tag_h
        d.rectangle((tx, ty, tx + tag_w - 1, ty + tag_h - 1), fill=(255, 255, 255), outline=(70, 70, 70))
        draw_text(d, tx + pad, ty + pad, code, f)

    return Block(width, height, (0, 0, width, height), draw)


def _card(ctx: RenderContext, color: str, n: int) -> Block:
    """A coloured card with ``n`` dots; dot pitch equals the digit height, so counting needs what reading does."""
    g = ctx.digit_px
    d_dot = max(2, round(0.55 * g))
    pitch = max(d_dot + 2, g)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    pad = max(2, g // 2)
    w, h = 2 * pad + (cols - 1) * pitch + d_dot, 2 * pad + (rows - 1) * pitch + d_dot

    def draw(d: ImageDraw.ImageDraw, ox: int, oy: int) -> None:
        d.rectangle((ox, oy, ox + w - 1, oy + h - 1), fill=ctx.colors[color], outline=(60, 60, 60))
        for k in range(n):
            x, y = ox + pad + (k % cols) * pitch, oy + pad + (k // cols) * pitch
            d.ellipse((x, y, x + d_dot - 1, y + d_dot - 1), fill=(255, 255, 255))

    return Block(w, h, (0, 0, w, h), draw)


def _sign(ctx: RenderContext, color: str, word: str) -> Block:
    f, g = ctx.font_size, ctx.digit_px
    tw, th, _, _ = text_box(word, f)
    pad = max(2, g // 3)
    w, h = tw + 2 * pad, th + 2 * pad
    post = max(2, g // 4)

    def draw(d: ImageDraw.ImageDraw, ox: int, oy: int) -> None:
        d.rectangle((ox + w // 2 - post // 2, oy + h, ox + w // 2 + post // 2, oy + h + g), fill=(90, 80, 70))
        d.rectangle((ox, oy, ox + w - 1, oy + h - 1), fill=ctx.colors[color])
        draw_text(d, ox + pad, oy + pad, word, f, fill=(255, 255, 255))

    return Block(w, h + g, (0, 0, w, h), draw)


def _scatter(ctx: RenderContext, blocks: list[Block], taken: list, area) -> list[tuple[Block, tuple[int, int]]]:
    """Put distractor blocks anywhere free; those that find no room are left out."""
    rng, out = ctx.rng, []
    for b in blocks:
        for _ in range(30):
            if area[2] - b.width <= area[0] or area[3] - b.height <= area[1]:
                break
            ox, oy = rng.randint(area[0], area[2] - b.width), rng.randint(area[1], area[3] - b.height)
            box, _ = b.at(ox, oy)
            if not any(overlaps(box, t, max(4, ctx.digit_px // 2)) for t in taken):
                taken.append(box)
                out.append((b, (ox, oy)))
                break
    return out


def _background(ctx: RenderContext) -> Image.Image:
    rng, W, H = ctx.rng, ctx.width, ctx.height
    img = Image.new("RGB", (W, H), rng.choice(_SKIES))
    d = ImageDraw.Draw(img)
    horizon = int(H * rng.uniform(0.3, 0.55))
    d.rectangle((0, horizon, W, H), fill=rng.choice(_GROUNDS))
    # big muted buildings and hills: scenery that is not in the question palette
    for _ in range(rng.randint(2, 5)):
        bw, bh = int(W * rng.uniform(0.08, 0.2)), int(H * rng.uniform(0.1, 0.3))
        x = rng.randint(0, max(0, W - bw))
        shade = rng.randint(150, 200)
        d.rectangle((x, horizon - bh, x + bw, horizon), fill=(shade, shade - 8, shade - 16))
    for _ in range(rng.randint(1, 3)):
        r = int(min(W, H) * rng.uniform(0.1, 0.25))
        cx = rng.randint(0, W)
        d.ellipse((cx - r, horizon - r // 2, cx + r, horizon + r // 2), fill=(150, 175, 135))
    return img


def render_scene(ctx: RenderContext) -> Rendered | None:
    """Draw one scene item (see the module docstring), or ``None`` when it does not fit."""
    rng, W, H = ctx.rng, ctx.width, ctx.height
    m = max(4, round(0.02 * min(W, H)))
    area = (m, m, W - m, H - m)
    palette = list(ctx.colors)
    combos = [(s, c) for s in C.SHAPES for c in palette]
    if ctx.template not in templates(ctx.profile.vocabulary, ctx.pair):
        raise ValueError(f"scene template {ctx.template!r} does not fit this item")
    distract: list[Block] = []
    required = 0  # leading distractors the question needs (same-shape objects of other colours)
    if ctx.pair:
        (s1, c1), (s2, c2) = rng.sample(combos, k=2)
        codes = rng.sample(range(100, 1000), k=2)
        blocks = [_tagged(ctx, s1, c1, str(codes[0])), _tagged(ctx, s2, c2, str(codes[1]))]
        q = f"What is the larger of the codes on the {c1} {s1} and the {c2} {s2}?"
        answers, metric, template, atype = [str(max(codes))], "exact", "scene-larger-code", "code"
        rest = [x for x in combos if x not in ((s1, c1), (s2, c2))]
        distract = [_tagged(ctx, s, c, C.code(rng)) for s, c in rng.sample(rest, k=rng.randint(3, 7))]
    else:
        template = ctx.template
        if template == "scene-code":
            shape, color = rng.choice(combos)
            value = C.code(rng, 3 if ctx.tiny else rng.choice((2, 3, 4)))
            blocks = [_tagged(ctx, shape, color, value)]
            q, answers, metric, atype = f"What is the code on the {color} {shape}?", [value], "exact", "code"
            rest = [x for x in combos if x != (shape, color)]
            distract = [_tagged(ctx, s, c, C.code(rng, len(value))) for s, c in rng.sample(rest, k=rng.randint(3, 8))]
        elif template == "scene-color":
            shape = rng.choice(C.SHAPES)
            colors = rng.sample(palette, k=rng.randint(3, min(5, len(palette))))
            codes = [str(v) for v in rng.sample(range(100, 1000), k=len(colors))]
            blocks = [_tagged(ctx, shape, colors[0], codes[0])]
            q, answers, metric, atype = f"What color is the {shape} with the code {codes[0]}?", [colors[0]], "exact", "color"
            distract = [_tagged(ctx, shape, c, v) for c, v in zip(colors[1:], codes[1:])]
            required = len(distract)
            others = [x for x in combos if x[0] != shape]
            distract += [_tagged(ctx, s, c, C.code(rng)) for s, c in rng.sample(others, k=rng.randint(0, 3))]
        elif template == "scene-count":
            colors = rng.sample(palette, k=rng.randint(3, min(5, len(palette))))
            top = 5 if ctx.tiny else 9
            counts = [rng.randint(1, top) for _ in colors]
            blocks = [_card(ctx, colors[0], counts[0])]
            n = counts[0]
            q, answers = f"How many dots are on the {colors[0]} card?", [str(n), _NUMBER_WORDS[n]]
            metric, atype = "exact", "count"
            distract = [_card(ctx, c, k) for c, k in zip(colors[1:], counts[1:])]
        else:
            colors = rng.sample(palette, k=rng.randint(3, min(5, len(palette))))
            words = rng.sample(C.SIGNS, k=len(colors))
            blocks = [_sign(ctx, colors[0], words[0])]
            q, answers, metric, atype = f"What does the {colors[0]} sign say?", [words[0]], "anls", "phrase"
            distract = [_sign(ctx, c, w) for c, w in zip(colors[1:], words[1:])]
    spots = place_blocks(ctx, blocks, area, pad=max(4, ctx.digit_px // 2))
    if spots is None:
        return None
    img = _background(ctx)
    d = ImageDraw.Draw(img)
    placed = [b.at(*o) for b, o in zip(blocks, spots)]
    taken = [box for box, _ in placed]
    # distractors of the asked kind must all be there for the question to be fair (colour and count)
    scattered = _scatter(ctx, distract, taken, area)
    needed = {id(b) for b in distract[:required]}
    if required and sum(1 for b, _ in scattered if id(b) in needed) < min(2, required):
        return None
    for b, o in scattered:
        b.draw_fn(d, *o)
    for b, o in zip(blocks, spots):
        b.draw_fn(d, *o)
    return Rendered(img, q, answers, metric, template, atype, [ev for _, ev in placed])
