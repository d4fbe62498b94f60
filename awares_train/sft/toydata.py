"""A small trajectory folder in the contract's format, made from the synthetic generator.

For tests, benchmarks and smoke runs of SFT/GRPO: the real builder (``awares-train build-data``) runs
models and judges; this one writes the ideal trajectory of each synthetic sample directly ("code"
questions need the crop that holds the code, the others are answered from the low-res view).
"""

from __future__ import annotations

import json
from pathlib import Path

from awares_tool.crops import get_crop_set
from awares_tool.episode import CropEpisode
from awares_tool.images.lowres import parse_lowres
from awares_tool.protocol import CropRequest, build_system_prompt, example_request

__all__ = ["write_toy_trajectories"]


def write_toy_trajectories(out_dir: str | Path, n: int, *, size: int = 224, height: int | None = None,
                           crop_share: float = 0.5, split: str = "train", seed: int = 0, lowres: str | float = 0.5,
                           prompt_style: str = "compact") -> Path:
    """Write ``n`` trajectories (``data.jsonl``, ``images/``, ``settings.json``) into ``out_dir``.

    Args:
        out_dir: Folder to create.
        n: Number of records.
        size: Width of the synthetic images (pixels, >= 200 as the generator requires).
        height: Their height (default: ``size``, square).
        crop_share: Share of records that need a crop.
        split: Generator split (``train``/``val``/``test``), for disjoint held-out data.
        seed: Generator seed.
        lowres: Low-res policy (:func:`awares_tool.images.lowres.parse_lowres`).
        prompt_style: System prompt style (``compact`` keeps tiny-model sequences short).

    Returns:
        ``out_dir`` as a path.
    """
    from awares_train.data.synthetic import SyntheticConfig, generate_sample

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    crop_set = get_crop_set("awares9")
    system = build_system_prompt(crop_set, style=prompt_style)  # type: ignore[arg-type]
    policy = parse_lowres(lowres)
    height = height or size
    cfg = SyntheticConfig(width=size, height=height, font_size=max(8, min(size, height) // 16), crop_share=crop_share,
                          seed=seed)
    with (out / "data.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(n):
            s = generate_sample(i, cfg, split)
            full, low = f"images/{s.id}.png", f"images/{s.id}_low.png"
            s.image.save(out / full)
            episode = CropEpisode(s.image, crop_set=crop_set, lowres=policy)
            episode.first_view().save(out / low)
            msgs = [{"role": "system", "content": [{"type": "text", "text": system}]},
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": s.question}]}]
            images = [low]
            if s.needs_crop:
                request = example_request(s.target_regions)
                turn = episode.fetch(CropRequest(regions=s.target_regions, form="text", raw=request))
                msgs.append({"role": "assistant", "content": [{"type": "text", "text": request}]})
                for name, crop in zip(turn.names, turn.images):
                    rel = f"images/{s.id}_crop-{name}.png"
                    crop.save(out / rel)
                    images.append(rel)
                msgs.append({"role": "user", "content": [*({"type": "image"} for _ in turn.images),
                                                         {"type": "text", "text": turn.text}]})
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": s.answers[0]}]})
            rec = {"id": s.id, "source": "synthetic", "question": s.question, "answers": s.answers,
                   "label": "crop" if s.needs_crop else "direct", "target_regions": s.target_regions,
                   "image": full, "image_size": list(s.image.size), "images": images, "messages": msgs,
                   "tool_turn": 2 if s.needs_crop else None, "target_rtr": None,
                   "evidence_box": list(s.evidence_box) if s.evidence_box else None, "grounding": "dataset",
                   "judge": None}
            fh.write(json.dumps(rec) + "\n")
    settings = {"seed": seed, "backend": "synthetic-oracle", "crop_set": "awares9", "lowres": policy.model_dump(),
                "prompt_style": prompt_style, "system_prompt": system, "n": n, "split": split}
    (out / "settings.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    return out
