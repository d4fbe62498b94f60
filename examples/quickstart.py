"""Ask the embedded default model two questions about the shipped example image.

    python examples/quickstart.py [IMAGE QUESTION] [--backend transformers:PATH]

One question needs a high-resolution crop (small text), one does not (how many big shapes). The result
shows which regions the model fetched and what it cost against full resolution. (The embedded tiny model
is weakest at colour / shape questions about scenes with three shapes, about 3 in 4 right: see
docs/tiny_model.md.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from awares_tool import crop_on_demand

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", nargs="?", default=str(HERE / "images" / "code_and_shapes.png"))
    ap.add_argument("question", nargs="?", default=None)
    ap.add_argument("--backend", default=None, help="backend spec; default: the embedded tiny model")
    args = ap.parse_args()
    questions = [args.question] if args.question else ["What is the code?", "How many shapes are there?"]
    for q in questions:
        res = crop_on_demand(args.image, q, backend=args.backend)
        print(f"Q: {q}\nA: {res.answer}")
        print(f"   fetched: {res.regions or 'nothing (low-res view was enough)'}")
        print(f"   RTR {res.tokens.rtr:.2f} ({res.tokens.spent} of {res.tokens.full} visual tokens), {res.wall_s:.2f}s\n")


if __name__ == "__main__":
    main()
