"""End-to-end evaluation of a saved tiny model through the generic transformers path.

Loads the folder with ``AutoModelForImageTextToText`` + ``load_processor``, reads ``awares.json`` and
runs exactly the messages the inference loop sends: awares mode (low-res view + system prompt, an
optional ``GET_CROPS`` round with the native-resolution crop, greedy decoding), and the full-res and
low-res baselines (no system prompt). Writes the metrics back into ``awares.json``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from awares_train.data.synthetic import SyntheticConfig, SyntheticSample
from awares_train.tiny.evaluate import heldout_samples
from awares_train.tiny.tasks import crop_box

__all__ = ["TinyVLM", "parse_request", "evaluate_folder", "final_report", "font_curve"]

logger = logging.getLogger(__name__)

_REQ = re.compile(r"GET_CROPS\s*:?\s*\[(.*?)\]", re.S)


def parse_request(text: str) -> list[str] | None:
    """Region names of a ``GET_CROPS: [...]`` reply, or ``None`` when the reply is an answer."""
    m = _REQ.search(text)
    if m is None:
        return None
    return re.findall(r"[A-Za-z0-9_]+", m.group(1))


class TinyVLM:
    """A saved model folder plus the greedy chat helpers the evaluation needs."""

    def __init__(self, folder: str | Path) -> None:
        from transformers import AutoModelForImageTextToText

        from awares_tool.backends.hf_processors import load_processor

        self.folder = Path(folder)
        self.model = AutoModelForImageTextToText.from_pretrained(self.folder).eval()
        self.proc = load_processor(self.folder)
        self.card = json.loads((self.folder / "awares.json").read_text())
        self.image_pad = self.proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")

    @torch.no_grad()
    def chat(self, messages: list[dict[str, Any]], max_new_tokens: int = 16) -> tuple[str, int]:
        """Greedy reply (special tokens stripped) and the number of visual tokens in the prompt."""
        inputs = self.proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt")
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:]
        text = self.proc.tokenizer.decode(new, skip_special_tokens=True).strip()
        return text, int((inputs["input_ids"] == self.image_pad).sum())

    def awares(self, image: Image.Image, question: str) -> dict[str, Any]:
        """The two-turn AwaRes loop on one image: returns the reply, the request and visual tokens spent."""
        w, h = image.size
        f = self.card["lowres"]["factor"]
        low = image.resize((round(w * f), round(h * f)), Image.BICUBIC)
        msgs: list[dict[str, Any]] = [
            {"role": "system", "content": [{"type": "text", "text": self.card["system_prompt"]}]},
            {"role": "user", "content": [{"type": "image", "image": low}, {"type": "text", "text": question}]}]
        first, vt = self.chat(msgs)
        regions = parse_request(first)
        if regions is None:
            return {"answer": first, "regions": None, "visual_tokens": vt}
        crops = []
        for r in regions:
            try:
                from awares_tool.crops import get_crop_set

                crops.append(image.crop(get_crop_set("awares9").box(r, w, h)))
            except Exception:  # noqa: BLE001 - unknown name: fall back to the full image, like the official code
                crops.append(image)
        msgs += [{"role": "assistant", "content": [{"type": "text", "text": first}]},
                 {"role": "user", "content": [*({"type": "image", "image": c} for c in crops),
                                              {"type": "text", "text": self.card["crops_turn_text"].format(
                                                  regions=", ".join(regions))}]}]
        answer, vt2 = self.chat(msgs)
        return {"answer": answer, "regions": regions, "visual_tokens": vt2}

    def single(self, image: Image.Image, question: str) -> tuple[str, int]:
        return self.chat([{"role": "user", "content": [{"type": "image", "image": image},
                                                       {"type": "text", "text": question}]}])


def _ok(pred: str, s: SyntheticSample) -> bool:
    return pred.strip().lower().rstrip(".") in [a.lower() for a in s.answers]


def evaluate_folder(folder: str | Path, n: int = 100, font: int = 28, baselines: bool = True) -> dict[str, Any]:
    """Awares-mode and baseline metrics on ``n`` code + ``n`` other held-out test samples."""
    vlm = TinyVLM(folder)
    cfg = SyntheticConfig(font_size=font)
    samples = heldout_samples(n, cfg, "code", split="test") + heldout_samples(n, cfg, "other", split="test")
    t0 = time.time()
    full_tokens = 0
    rows = []
    for s in samples:
        r = vlm.awares(s.image, s.question)
        w, h = s.image.size
        ft = (w // 28) * (h // 28)
        full_tokens += ft
        row = {"kind": s.kind, "needs_crop": s.needs_crop, "requested": r["regions"] is not None,
               "region_ok": r["regions"] == s.target_regions, "aw_ok": _ok(r["answer"], s),
               "aw_tokens": r["visual_tokens"], "full_tokens": ft}
        if baselines:
            row["full_ok"] = _ok(vlm.single(s.image, s.question)[0], s)
            low = s.image.resize((w // 2, h // 2), Image.BICUBIC)
            row["low_ok"] = _ok(vlm.single(low, s.question)[0], s)
        rows.append(row)
    secs = time.time() - t0

    def mean(xs: list[Any]) -> float:
        return round(sum(xs) / len(xs), 4) if xs else float("nan")

    code = [r for r in rows if r["needs_crop"]]
    other = [r for r in rows if not r["needs_crop"]]
    res: dict[str, Any] = {
        "n_code": len(code), "n_other": len(other), "font_size": font, "split": "test",
        "decision_acc": mean([r["requested"] == r["needs_crop"] for r in rows]),
        "region_acc": mean([r["region_ok"] for r in code]),
        "awares_exact": mean([r["aw_ok"] for r in rows]),
        "awares_exact_code": mean([r["aw_ok"] for r in code]),
        "awares_exact_other": mean([r["aw_ok"] for r in other]),
        "rtr": round(sum(r["aw_tokens"] for r in rows) / sum(r["full_tokens"] for r in rows), 4),
        "rtr_code": round(sum(r["aw_tokens"] for r in code) / max(1, sum(r["full_tokens"] for r in code)), 4),
        "rtr_other": round(sum(r["aw_tokens"] for r in other) / max(1, sum(r["full_tokens"] for r in other)), 4),
        "eval_seconds": round(secs, 1)}
    if baselines:
        res.update({"fullres_exact": mean([r["full_ok"] for r in rows]),
                    "fullres_exact_code": mean([r["full_ok"] for r in code]),
                    "fullres_exact_other": mean([r["full_ok"] for r in other]),
                    "lowres_exact": mean([r["low_ok"] for r in rows]),
                    "lowres_exact_code": mean([r["low_ok"] for r in code]),
                    "lowres_exact_other": mean([r["low_ok"] for r in other])})
    return res


def font_curve(folder: str | Path, fonts: tuple[int, ...] = (16, 20, 24, 28, 32), n: int = 100) -> list[dict[str, Any]]:
    """Code exact match from the native crop vs from the low-res view, per font size (no system prompt)."""
    vlm = TinyVLM(folder)
    out = []
    for f in fonts:
        ss = heldout_samples(n, SyntheticConfig(font_size=f), "code", split="test")
        crop = sum(_ok(vlm.single(s.image.crop(crop_box(s, s.target_regions[0])), s.question)[0], s) for s in ss)
        low = sum(_ok(vlm.single(s.image.resize((s.image.width // 2, s.image.height // 2), Image.BICUBIC),
                                 s.question)[0], s) for s in ss)
        out.append({"font_size": f, "crop_exact": crop / n, "lowres_exact": low / n})
    return out


def final_report(folder: str | Path, n: int = 100, curve: bool = False) -> dict[str, Any]:
    """Evaluate ``folder`` and write the metrics into its ``awares.json``."""
    folder = Path(folder)
    res = evaluate_folder(folder, n)
    if curve:
        res["font_curve"] = font_curve(folder, n=n // 2)
    card_path = folder / "awares.json"
    card = json.loads(card_path.read_text())
    card["metrics"] = {**card.get("metrics", {}), "loop_eval": res}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    logger.info("final eval of %s: %s", folder, json.dumps(res))
    return res


def main(argv: list[str] | None = None) -> None:
    """``python -m awares_train.tiny.loop_eval DIR [--n N] [--curve]``: evaluate and update awares.json."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--n", type=int, default=100, help="test samples per kind (code / other)")
    ap.add_argument("--curve", action="store_true", help="also the crop-vs-lowres curve over font sizes")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    print(json.dumps(final_report(args.folder, args.n, curve=args.curve), indent=2))  # noqa: T201 - CLI output


if __name__ == "__main__":
    main()
