"""Oracle grounding: where in the image is the evidence for the correct answer, and which crops hold it.

A ``crop`` record needs a target: the regions the model should have asked for. A grounder finds
an evidence box; :func:`map_box_to_regions` turns it into crop-set regions with
:func:`awares_tool.crops.regions_for_box` (the paper's rule: every crop with IoU >= 0.5; or the
smallest set of crops covering the box). When no crop qualifies the target falls back to ``all``
(the whole image at full resolution), and the caller counts it.

Grounders (the small :class:`Grounder` protocol), tried in order by :class:`ChainGrounder`:

* :class:`DatasetGrounder`: evidence boxes that come with the data set;
* :class:`OCRGrounder`: the answer's words found by Tesseract (:mod:`awares_train.data.ocr`);
* :class:`VLMGrounder`: a grounding-capable model asked for a box (0-1000 coordinates as
  Qwen2-VL / Qwen3-VL emit them; pixels for Qwen2.5-VL), through any backend.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from awares_tool.crops import FULL_IMAGE, CropSet, regions_for_box
from awares_tool.errors import MalformedRequestError
from awares_tool.images import SourceImage
from awares_train.data.records import VQARecord

__all__ = [
    "Grounding",
    "Grounder",
    "DatasetGrounder",
    "OCRGrounder",
    "VLMGrounder",
    "ChainGrounder",
    "parse_box_reply",
    "map_box_to_regions",
    "map_grounding_to_regions",
    "get_grounder",
]

logger = logging.getLogger(__name__)

GroundingKind = Literal["dataset", "ocr", "vlm"]
Box = tuple[int, int, int, int]


class Grounding(BaseModel):
    """An evidence box in pixels of the original image, and who found it."""

    box: Box
    method: GroundingKind
    detail: dict[str, Any] = Field(default_factory=dict)
    parts: list[Box] = Field(default_factory=list, description="The separate evidence boxes ``box`` is the union of "
                                                               "(several pieces of evidence: each maps to its own crops).")


@runtime_checkable
class Grounder(Protocol):
    """Finds the evidence box of a record's answer, or returns None when it cannot."""

    name: str

    def ground(self, record: VQARecord, image: SourceImage, answer: str) -> Grounding | None:
        ...


def _union(boxes: Sequence[Sequence[float]]) -> Box:
    return (int(min(b[0] for b in boxes)), int(min(b[1] for b in boxes)),
            int(-(-max(b[2] for b in boxes) // 1)), int(-(-max(b[3] for b in boxes) // 1)))


class DatasetGrounder:
    """The record's own evidence boxes (their union, when there are several)."""

    name = "dataset"

    def ground(self, record: VQARecord, image: SourceImage, answer: str) -> Grounding | None:
        if not record.evidence_boxes:
            return None
        return Grounding(box=_union(record.evidence_boxes), method="dataset",
                         detail={"boxes": len(record.evidence_boxes)}, parts=list(record.evidence_boxes))

    def describe(self) -> dict[str, Any]:
        return {"kind": "dataset"}


class OCRGrounder:
    """Find where the answer is written with Tesseract; tries each reference answer in order.

    Args:
        min_similarity: Normalised similarity a word sequence needs (1.0: exact after normalising).
        passes: OCR views to try, see :data:`awares_train.data.ocr.DEFAULT_PASSES`.
        lang: Tesseract language.
    """

    name = "ocr"

    def __init__(self, *, min_similarity: float = 1.0, passes: Sequence[tuple[int | None, int]] | None = None,
                 lang: str = "eng") -> None:
        from awares_train.data.ocr import DEFAULT_PASSES

        self.min_similarity, self.lang = min_similarity, lang
        self.passes = tuple(passes) if passes is not None else DEFAULT_PASSES

    def ground(self, record: VQARecord, image: SourceImage, answer: str) -> Grounding | None:
        from awares_train.data.ocr import locate_text

        for candidate in dict.fromkeys([answer, *record.answers]):
            match = locate_text(image.image, candidate, passes=self.passes, min_similarity=self.min_similarity,
                                lang=self.lang)
            if match is not None:
                return Grounding(box=match.box, method="ocr",
                                 detail={"words": match.words, "similarity": match.similarity,
                                         "candidates": match.candidates})
        return None

    def describe(self) -> dict[str, Any]:
        return {"kind": "ocr", "min_similarity": self.min_similarity, "passes": [list(p) for p in self.passes],
                "lang": self.lang}


VLM_GROUNDING_PROMPT = (
    "Question: {question}\nAnswer: {answer}\n"
    "Locate the part of the image that shows the evidence for this answer. Reply only with its bounding "
    'box as JSON: {{"bbox_2d": [x1, y1, x2, y2]}}.'
)

_BOX_TOKENS = re.compile(r"<\|box_start\|>\s*\(\s*([-\d.]+)\s*,\s*([-\d.]+)\s*\)\s*,\s*\(\s*([-\d.]+)\s*,\s*"
                         r"([-\d.]+)\s*\)\s*<\|box_end\|>")
_FOUR_NUMBERS = re.compile(r"\[\s*([-\d.]+)\s*,\s*([-\d.]+)\s*,\s*([-\d.]+)\s*,\s*([-\d.]+)\s*\]")


def parse_box_reply(text: str, *, units: Literal["pixels", "norm1000", "norm1"], image_size: tuple[int, int]) -> Box:
    """The first box in a grounding model's reply, in pixels of an image of ``image_size``.

    Accepts ``{"bbox_2d": [x1, y1, x2, y2], ...}`` JSON (Qwen2.5/3-VL), Qwen2-VL's
    ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` and a bare ``[x1, y1, x2, y2]`` list.

    Raises:
        MalformedRequestError: no box in the reply, or an invalid one.
    """
    from awares_tool.protocol.zoom import to_pixel_box

    raw: list[Any] | None = None
    m = _BOX_TOKENS.search(text)
    if m:
        raw = [float(g) for g in m.groups()]
    if raw is None:
        for chunk in re.findall(r"\{[^{}]*\}", text):
            try:
                obj = json.loads(chunk)
            except json.JSONDecodeError:
                continue
            box = obj.get("bbox_2d", obj.get("bbox")) if isinstance(obj, dict) else None
            if isinstance(box, list) and len(box) == 4:
                raw = box
                break
    if raw is None:
        m = _FOUR_NUMBERS.search(text)
        if m:
            raw = [float(g) for g in m.groups()]
    if raw is None:
        raise MalformedRequestError(f"no bounding box in the grounding reply {text[:160]!r}")
    return to_pixel_box(raw, units, image_size)


class VLMGrounder:
    """Ask a grounding-capable model for the evidence box.

    Args:
        backend: Backend object or spec.
        units: Coordinate system of the model's boxes: ``norm1000`` (Qwen2-VL, Qwen3-VL), ``pixels``
            of the image it was sent (Qwen2.5-VL), or ``norm1``.
        max_pixels: Downscale the image sent above this many pixels (boxes are scaled back).
        prompt: Template with ``{question}`` and ``{answer}``.
        max_new_tokens: Reply budget.
    """

    name = "vlm"

    def __init__(self, backend: Any, *, units: Literal["pixels", "norm1000", "norm1"] = "norm1000",
                 max_pixels: int | None = 1_605_632, prompt: str = VLM_GROUNDING_PROMPT,
                 max_new_tokens: int = 64) -> None:
        from awares_tool.backends import resolve_backend

        self.backend = resolve_backend(backend)
        self.units, self.max_pixels, self.prompt, self.max_new_tokens = units, max_pixels, prompt, max_new_tokens

    def ground(self, record: VQARecord, image: SourceImage, answer: str) -> Grounding | None:
        from awares_tool.backends.base import GenerationSettings, ImagePart, Message, TextPart
        from awares_tool.images.lowres import cap_pixels

        full = image.image
        sent = cap_pixels(full, max_pixels=self.max_pixels) if self.max_pixels else full
        text = self.prompt.format(question=record.question, answer=answer)
        messages = [Message(role="user", content=[ImagePart(image=sent, label="full image"), TextPart(text=text)])]
        reply = self.backend.generate(messages, GenerationSettings(max_new_tokens=self.max_new_tokens)).text
        try:
            box = parse_box_reply(reply, units=self.units, image_size=sent.size)
        except MalformedRequestError as e:
            logger.info("VLM grounding failed for %s: %s", record.id, e)
            return None
        if sent.size != full.size:
            sx, sy = full.width / sent.width, full.height / sent.height
            box = (math.floor(box[0] * sx), math.floor(box[1] * sy), min(full.width, math.ceil(box[2] * sx)),
                   min(full.height, math.ceil(box[3] * sy)))
        return Grounding(box=box, method="vlm", detail={"reply": reply[:200]})

    def describe(self) -> dict[str, Any]:
        return {"kind": "vlm", "backend": getattr(self.backend, "name", type(self.backend).__name__),
                "units": self.units, "max_pixels": self.max_pixels, "prompt": self.prompt}


class ChainGrounder:
    """Try grounders in order; the first box wins."""

    def __init__(self, grounders: Sequence[Grounder]) -> None:
        if not grounders:
            raise ValueError("ChainGrounder needs at least one grounder")
        self.grounders = list(grounders)
        self.name = ",".join(g.name for g in self.grounders)

    def ground(self, record: VQARecord, image: SourceImage, answer: str) -> Grounding | None:
        for g in self.grounders:
            found = g.ground(record, image, answer)
            if found is not None:
                return found
        return None

    def describe(self) -> dict[str, Any]:
        return {"kind": "chain", "grounders": [getattr(g, "describe", lambda g=g: {"kind": g.name})()
                                               for g in self.grounders]}


def map_box_to_regions(box: Sequence[float], crop_set: CropSet, width: int, height: int, *,
                       rule: Literal["iou", "cover"] = "cover", threshold: float | None = None) -> tuple[list[str], bool]:
    """Target regions for an evidence box, and whether they fell back to ``all``.

    Returns:
        ``(regions, fallback)``: the regions :func:`regions_for_box` picks, or ``(["all"], True)``
        when none qualifies.
    """
    names = regions_for_box(box, crop_set, width, height, rule=rule, threshold=threshold)
    if names:
        return names, False
    return [FULL_IMAGE], True


def map_grounding_to_regions(found: Grounding, crop_set: CropSet, width: int, height: int, *,
                             rule: Literal["iou", "cover"] = "cover",
                             threshold: float | None = None) -> tuple[list[str], bool]:
    """Target regions for a grounding: each piece of evidence maps to its own crops, then they are merged.

    Two pieces in opposite corners need those two quarters, not the halves their union box would map to.
    Any piece that maps to nothing makes the whole target ``all`` (``fallback`` True).
    """
    names: list[str] = []
    for box in found.parts or [found.box]:
        regions, fell_back = map_box_to_regions(box, crop_set, width, height, rule=rule, threshold=threshold)
        if fell_back:
            return [FULL_IMAGE], True
        names += [n for n in regions if n not in names]
    return names, False


def get_grounder(spec: Any = "dataset,ocr", *, backend: Any = None, units: str = "norm1000",
                 ocr_min_similarity: float = 1.0) -> Grounder:
    """A grounder from a spec: an object, or comma-separated names ``dataset``, ``ocr``, ``vlm``
    (``vlm`` uses ``backend``) and ``vlm=BACKEND_SPEC``, tried in order.
    """
    if not isinstance(spec, str):
        if not callable(getattr(spec, "ground", None)):
            raise TypeError(f"a grounder must have a ground() method, got {type(spec).__name__}")
        return spec
    parts: list[Grounder] = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        kind, _, target = name.partition("=")
        if kind == "dataset":
            parts.append(DatasetGrounder())
        elif kind == "ocr":
            parts.append(OCRGrounder(min_similarity=ocr_min_similarity))
        elif kind == "vlm":
            be = target or backend
            if be is None:
                raise ValueError("VLM grounding needs a backend: 'vlm=BACKEND_SPEC' or a grounding backend")
            parts.append(VLMGrounder(be, units=units))  # type: ignore[arg-type]
        else:
            raise ValueError(f"unknown grounder {kind!r}; use dataset, ocr, vlm or vlm=BACKEND_SPEC")
    return parts[0] if len(parts) == 1 else ChainGrounder(parts)
