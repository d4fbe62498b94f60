"""Build crop-use trajectories from VQA data: answer twice, judge, ground, emit (training steps 1-2).

``build_dataset`` drives the whole pipeline over a data set. Records run in a thread pool
(``concurrency``, useful for remote backends) but are written in input order, so a run's output
does not depend on scheduling. Every record either becomes a trajectory line or a reject line;
an error in one record is logged to ``rejects.jsonl`` and never ends the run. The run resumes
where a previous one stopped (see :mod:`awares_train.data.store`).
"""

from __future__ import annotations

import collections
import json
import logging
import platform
import random
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from awares_tool.backends.base import GenerationSettings
from awares_tool.crops import CropSet, get_crop_set
from awares_tool.episode.episode import CropEpisode, model_costs
from awares_tool.images import open_image
from awares_tool.images.lowres import parse_lowres
from awares_tool.protocol import CropRequest, build_system_prompt, example_request
from awares_train.data.answering import answer_twice, load_backend
from awares_train.data.format import Trajectory, build_messages, copy_or_save, safe_name, save_png
from awares_train.data.grounding import Grounder, get_grounder, map_grounding_to_regions
from awares_train.data.judges import Judge, get_judge, label_for
from awares_train.data.adapters import load_records
from awares_train.data.records import VQARecord, count_rows
from awares_train.data.stats import write_stats
from awares_train.data.store import RunStore

__all__ = ["BuildConfig", "BuildReport", "build_dataset", "process_record"]

logger = logging.getLogger(__name__)

#: Settings that change how a run goes but not what it writes (a resumed run may change them).
_RUNTIME_ONLY = {"concurrency", "progress", "limit", "out", "plot"}


class BuildConfig(BaseModel):
    """Every setting of a build; the whole object is saved in ``settings.json``."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="Input data: JSONL/JSON/parquet file or folder, or a datasets folder.")
    out: str = Field(description="Output trajectory folder.")
    adapter: str = Field("auto", description="Data adapter: auto, generic, synthetic, chartqa, docvqa, ...")
    split: str | None = None
    image_root: str | None = None
    limit: int | None = Field(None, ge=1)
    shuffle: bool = Field(False, description="Process records in a seeded random order.")
    backend: str = Field("default", description="Backend that answers (spec string).")
    judge: str = Field("auto", description="auto | exact | relaxed | anls | ... | embedding | llm:BACKEND")
    judge_threshold: float | None = None
    tie_margin: float | None = None
    grounding: str = Field("dataset,ocr", description="Grounders tried in order: dataset, ocr, vlm, vlm=BACKEND")
    bbox_units: Literal["pixels", "norm1000", "norm1"] = "norm1000"
    ocr_min_similarity: float = Field(1.0, gt=0.0, le=1.0)
    region_rule: Literal["iou", "cover"] = Field("cover", description="Box-to-crop rule (paper: iou at 0.5).")
    region_threshold: float | None = Field(None, gt=0.0, le=1.0)
    on_no_box: Literal["all", "reject"] = Field("all", description="A crop record with no evidence box.")
    crop_set: str = "awares9"
    lowres: str | float | None = Field(None, description="Low-res policy spec (default: halve each side).")
    prompt_style: Literal["full", "compact", "tool"] = "full"
    answer_source: Literal["reference", "model"] = Field(
        "reference", description="Final answer in the trajectory: the first reference, or the judged-best model answer.")
    keep_drop: bool = Field(False, description="Keep records neither answer got right (label 'drop').")
    token_family: str | None = Field("qwen2.5-vl", description="Token family for target RTR.")
    max_new_tokens: int = Field(64, ge=1)
    crop_max_pixels: int | None = None
    concurrency: int = Field(1, ge=1)
    seed: int = 0
    progress: bool = True
    plot: bool = Field(True, description="Draw stats.png (matplotlib); stats.json is always written.")


class BuildReport(BaseModel):
    """What one run did, plus the folder's stats."""

    out: str
    processed: int
    skipped: int
    written: int
    rejected: int
    errors: int
    stats: dict[str, Any]


class _Context:
    """Everything ``process_record`` needs, resolved once per run."""

    def __init__(self, cfg: BuildConfig, backend: Any, judge: Judge, grounder: Grounder, crop_set: CropSet) -> None:
        self.cfg, self.backend, self.judge, self.grounder, self.crop_set = cfg, backend, judge, grounder, crop_set
        self.policy = parse_lowres(cfg.lowres)
        card = getattr(backend, "model_card", None)
        self.system_prompt = (card.system_prompt if card is not None and card.system_prompt
                              else build_system_prompt(crop_set, style=cfg.prompt_style))
        self.crops_template = card.crops_turn_text if card is not None else None
        self.settings = GenerationSettings(max_new_tokens=cfg.max_new_tokens, temperature=0.0, seed=cfg.seed)
        # the backend's pixel cap shapes the low-res view (as when it answered); the target RTR is counted
        # for cfg.token_family, the model the trajectories are meant for
        self.model_max_pixels = model_costs(backend)[2]
        self.counter = _family_counter(cfg.token_family)
        self.out = Path(cfg.out)


def _family_counter(family: str | None) -> Any:
    if not family:
        return None
    from awares_tool.tokens import get_family

    return get_family(family).count


def process_record(rec: VQARecord, ctx: _Context) -> tuple[Literal["data", "reject"], dict[str, Any]]:
    """Run one record through answering, judging and grounding; write its images; return its line."""
    cfg = ctx.cfg
    src = open_image(rec.image_source())
    two = answer_twice(src, rec.question, backend=ctx.backend, crop_set=ctx.crop_set, lowres=ctx.policy,
                       settings=ctx.settings, crop_max_pixels=cfg.crop_max_pixels)
    j = ctx.judge.judge(rec.question, rec.answers, two.lowres, two.fullres, source=rec.source, record_id=rec.id)
    label = label_for(j.verdict)
    judge_info = {"lowres_answer": two.lowres, "fullres_answer": two.fullres, "verdict": j.verdict}
    if label == "drop" and not cfg.keep_drop:
        return "reject", {"id": rec.id, "reason": "drop", "source": rec.source, "judge": judge_info,
                          "scores": [j.lowres_score, j.fullres_score]}
    width, height = src.size
    regions: list[str] = []
    evidence = grounding = fallback = None
    if label == "crop":
        found = ctx.grounder.ground(rec, src, rec.answers[0])
        if found is None:
            if cfg.on_no_box == "reject":
                return "reject", {"id": rec.id, "reason": "no_evidence", "source": rec.source, "judge": judge_info}
            regions, fallback = ["all"], "no_box"
        else:
            evidence, grounding = found.box, found.method
            regions, fell_back = map_grounding_to_regions(found, ctx.crop_set, width, height, rule=cfg.region_rule,
                                                          threshold=cfg.region_threshold)
            fallback = "no_region" if fell_back else None
    if cfg.answer_source == "model":
        answer = two.fullres if j.verdict == "fullres" else two.lowres
    else:
        answer = rec.answers[0]

    name = safe_name(rec.id)
    images_dir = ctx.out / "images"
    copy_or_save(src, images_dir / f"{name}.png")
    episode = CropEpisode(src, crop_set=ctx.crop_set, lowres=ctx.policy, crops_template=ctx.crops_template,
                          model_max_pixels=ctx.model_max_pixels, counter=ctx.counter)
    low = episode.first_view()  # the view the model answered from in `lowres` mode
    save_png(low, images_dir / f"{name}_low.png")
    rel_images = [f"images/{name}_low.png"]
    request_text = crops_text = None
    if regions:
        request_text = example_request(regions)
        turn = episode.fetch(CropRequest(regions=regions, form="text", raw=request_text))
        crops_text = turn.text
        for region, crop in zip(turn.names, turn.images):
            save_png(crop, images_dir / f"{name}_crop-{region}.png")
            rel_images.append(f"images/{name}_crop-{region}.png")
    messages, tool_turn = build_messages(
        system_prompt=ctx.system_prompt, question=rec.question, answer=answer, request=request_text,
        n_crops=len(regions), crops_text=crops_text)
    traj = Trajectory(
        id=rec.id, source=rec.source, question=rec.question, answers=rec.answers, label=label,
        target_regions=regions, image=f"images/{name}.png", image_size=(width, height), images=rel_images,
        messages=messages, tool_turn=tool_turn, target_rtr=episode.ledger.rtr if ctx.counter else None,
        evidence_box=evidence, grounding=grounding, judge=judge_info, target_fallback=fallback)  # type: ignore[arg-type]
    return "data", traj.model_dump(mode="json")


def _settings(cfg: BuildConfig, ctx: _Context) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for dist in ("awares", "pillow", "pydantic", "datasets", "pytesseract", "sentence-transformers"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    versions["python"] = platform.python_version()
    describe = lambda obj: getattr(obj, "describe", lambda: {"name": getattr(obj, "name", type(obj).__name__)})()  # noqa: E731
    return {
        "format": "awares-trajectories/1",
        "config": cfg.model_dump(mode="json"),
        "backend": getattr(ctx.backend, "name", type(ctx.backend).__name__),
        "judge": describe(ctx.judge),
        "grounding": describe(ctx.grounder),
        "crop_set": {"name": ctx.crop_set.name, "regions": ctx.crop_set.region_names()},
        "lowres_policy": ctx.policy.model_dump(mode="json"),
        "system_prompt": ctx.system_prompt,
        # the crops-turn wording of the trajectories (None: the protocol's); SFT copies it into its model card
        "crops_turn_text": ctx.crops_template,
        "versions": versions,
    }


def _check_resume(path: Path, settings: dict[str, Any]) -> None:
    if not path.is_file():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    strip = lambda s: {k: v for k, v in s.get("config", {}).items() if k not in _RUNTIME_ONLY}  # noqa: E731
    if strip(old) != strip(settings) or old.get("backend") != settings.get("backend"):
        diff = sorted(k for k in set(strip(old)) | set(strip(settings)) if strip(old).get(k) != strip(settings).get(k))
        raise ValueError(
            f"{path.parent} was built with different settings ({', '.join(diff) or 'backend'}); "
            "use a new output folder, or the same settings to resume")


def _records(cfg: BuildConfig) -> tuple[list[VQARecord] | Any, int | None]:
    it = load_records(cfg.data, adapter=cfg.adapter, split=cfg.split, image_root=cfg.image_root,
                      limit=None if cfg.shuffle else cfg.limit, on_error="skip")
    if not cfg.shuffle:
        total = count_rows(cfg.data, split=cfg.split)
        return it, min(total, cfg.limit) if (total is not None and cfg.limit) else (total or cfg.limit)
    records = list(it)
    random.Random(f"build:{cfg.seed}").shuffle(records)
    records = records[: cfg.limit] if cfg.limit else records
    return records, len(records)


def build_dataset(cfg: BuildConfig, *, backend: Any = None, judge: Judge | None = None,
                  grounder: Grounder | None = None) -> BuildReport:
    """Build (or resume) a trajectory folder.

    Args:
        cfg: The settings.
        backend: A backend object to use instead of resolving ``cfg.backend`` (its ``name`` is recorded).
        judge: A judge object instead of ``cfg.judge``.
        grounder: A grounder object instead of ``cfg.grounding``.
    """
    be = backend if backend is not None else load_backend(cfg.backend)
    jd = judge if judge is not None else get_judge(cfg.judge, seed=cfg.seed, threshold=cfg.judge_threshold,
                                                   tie_margin=cfg.tie_margin)
    gr = grounder if grounder is not None else get_grounder(cfg.grounding, backend=be, units=cfg.bbox_units,
                                                            ocr_min_similarity=cfg.ocr_min_similarity)
    ctx = _Context(cfg, be, jd, gr, get_crop_set(cfg.crop_set))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(cfg, ctx)
    _check_resume(out / "settings.json", settings)
    (out / "settings.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    store = RunStore(out)
    done = store.open()
    records, total = _records(cfg)
    counts = collections.Counter()
    bar = _bar(total, cfg.progress)

    def run(rec: VQARecord) -> tuple[str, dict[str, Any]]:
        try:
            return process_record(rec, ctx)
        except Exception as e:  # noqa: BLE001 - one bad record must never end the run; it is logged
            logger.warning("record %s failed: %s: %s", rec.id, type(e).__name__, e)
            return "error", {"id": rec.id, "reason": "error", "source": rec.source,
                             "error": f"{type(e).__name__}: {e}"}

    def emit(kind: str, line: dict[str, Any]) -> None:
        if kind == "data":
            store.add(line)
            counts["written"] += 1
        else:
            store.reject(line.pop("id"), line.pop("reason"), **line)
            counts["errors" if kind == "error" else "rejected"] += 1
        if bar is not None:
            bar.update(1)

    window: collections.deque[Future] = collections.deque()
    try:
        with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
            for rec in records:
                counts["seen"] += 1
                if rec.id in done:
                    counts["skipped"] += 1
                    if bar is not None:
                        bar.update(1)
                    continue
                done.add(rec.id)  # a duplicate id later in the input is skipped, not written twice
                window.append(pool.submit(run, rec))
                while len(window) >= 2 * cfg.concurrency:
                    emit(*window.popleft().result())
            while window:
                emit(*window.popleft().result())
    finally:
        store.close()
        if bar is not None:
            bar.close()
    stats = write_stats(out, plot=cfg.plot)
    processed = counts["written"] + counts["rejected"] + counts["errors"]
    logger.info("build-data: %d processed (%d written, %d rejected, %d errors), %d already done",
                processed, counts["written"], counts["rejected"], counts["errors"], counts["skipped"])
    return BuildReport(out=str(out), processed=processed, skipped=counts["skipped"], written=counts["written"],
                       rejected=counts["rejected"], errors=counts["errors"], stats=stats)


def _bar(total: int | None, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="build-data", unit="rec")
