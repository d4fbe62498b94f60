"""An lmms-eval model that answers through the AwaRes loop, so crop-on-demand models are scored there.

lmms-eval hands a "simple" model ``Instance`` requests whose ``args`` are ``(context, gen_kwargs,
doc_to_visual, doc_id, task, split)``; :class:`AwaresLMMS` turns each into one
:func:`~awares_tool.crop_on_demand` call (low-res view + question -> optional crops -> answer) on the
configured backend and mode, and returns the answer. The harness scores accuracy as for any model;
the cost it cannot see (RTR: visual tokens processed over those of the full image) is recorded per
sample, written as JSONL when ``log_path`` is set, and summarised per task in the log and by
:meth:`AwaresEvalRunner.summary`. ``mode`` selects the baselines of the same loop (``lowres``,
``fullres``, ``all_crops``, ``full_on_request``) so every row of the paper's table is measured alike.

The request handling lives in :class:`AwaresEvalRunner`, which does not import lmms-eval, so it is
tested everywhere; ``AwaresLMMS`` is the thin ``lmms`` subclass, built on first access (lmms-eval's
base class imports torch). It is registered with lmms-eval through the ``lmms_eval.models`` entry point of
this package (:func:`manifests`), as a "simple" and a "chat" model, so after ``pip install awares`` the harness
finds it by name and no file is copied anywhere. Both request signatures are answered: the simple one
``(context, gen_kwargs, doc_to_visual, doc_id, task, split)`` and the chat one
``(context, doc_to_messages, gen_kwargs, doc_id, task, split)``. Run it (the tasks download their data sets)::

    lmms-eval --model awares --model_args backend=transformers:Kimhi/AWARES-Qwen2.5-VL-7B \\
        --tasks chartqa,docvqa_val --limit 200
    python -m awares_train.eval.lmms --backend ... --tasks chartqa --log runs/lmms/awares.jsonl   # + RTR summary

AwaRes looks at one image: a document with several images uses the first (``multi_image="first"``,
with a warning) or fails (``"error"``). Tested with lmms-eval 0.7.3 (``tests/test_integrations.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import operator
import statistics
import sys
import threading
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from awares_tool.backends.base import GenerationSettings
from awares_tool.errors import AwaresError
from awares_tool.episode.result import CropResult, Mode

__all__ = ["AwaresEvalConfig", "SampleRecord", "AwaresEvalRunner", "AwaresLMMS", "AwaresChatLMMS", "manifests", "main"]

logger = logging.getLogger(__name__)


class AwaresEvalConfig(BaseModel):
    """What the harness's ``--model_args`` may set (strings from the command line are coerced)."""

    model_config = ConfigDict(extra="forbid")

    backend: str | None = Field(None, description="Backend spec (transformers:PATH, llamacpp:..., "
                                "openai:URL#MODEL); None uses the embedded default model.")
    mode: Mode = "awares"
    crop_set: str | None = Field(None, description="Crop set; default: the model card's, else awares9.")
    lowres: str | float | None = Field(None, description="Low-res policy; default: model card's, else 0.5.")
    max_rounds: int = Field(1, ge=0)
    max_crops: int = Field(4, ge=1)
    max_new_tokens: int = Field(128, ge=1, description="When the task's generation_kwargs do not set it.")
    use_tools: bool = Field(False, description="Declare get_crops as a native tool (function calling).")
    crop_max_pixels: int | None = Field(None, ge=784)
    multi_image: Literal["first", "error"] = "first"
    log_path: Path | None = Field(None, description="Append one JSON line per sample (answer, regions, RTR).")


class SampleRecord(BaseModel):
    """One scored sample's AwaRes bookkeeping (what the harness's own logs do not carry)."""

    task: str
    doc_id: int | str | None = None
    mode: str
    answer: str
    answered: bool
    regions: list[str] = Field(default_factory=list)
    rounds: int = 0
    tokens_spent: int | None = None
    full_tokens: int | None = None
    rtr: float | None = None
    pixel_ratio: float | None = None
    wall_s: float = 0.0
    n_images: int = 1
    error: str | None = None


def _image(visual: Any) -> Any:
    """An ``open_image`` source from what a task's ``doc_to_visual`` returns (PIL, path, HF image dict)."""
    if isinstance(visual, dict):  # datasets' undecoded Image feature
        if visual.get("bytes"):
            return bytes(visual["bytes"])
        if visual.get("path"):
            return visual["path"]
    return visual


def _settings(gen_kwargs: dict[str, Any], default_max_new: int) -> tuple[GenerationSettings, list[str]]:
    until = gen_kwargs.get("until") or []
    if isinstance(until, str):
        until = [until]
    if not isinstance(until, list):
        raise ValueError(f"gen_kwargs['until'] must be a string or a list of strings, got "
                         f"{type(until).__name__}")
    sample = bool(gen_kwargs.get("do_sample", False))
    settings = GenerationSettings(
        max_new_tokens=int(gen_kwargs.get("max_new_tokens") or default_max_new),
        temperature=float(gen_kwargs.get("temperature") or 0.0) if sample else 0.0,
        top_p=float(gen_kwargs.get("top_p") or 1.0) if sample else 1.0,
    )
    return settings, [s for s in until if s]


def _plain(doc_id: Any) -> int | str | None:
    """A JSON-safe document id (datasets hand out numpy integers)."""
    if doc_id is None or isinstance(doc_id, (int, str)):
        return doc_id
    try:
        return operator.index(doc_id)
    except TypeError:
        return str(doc_id)


def _cut(text: str, until: Sequence[str]) -> str:
    """The answer up to the first stop string (applied after the loop: backends differ in stop support)."""
    cut = min((i for i in (text.find(s) for s in until) if i >= 0), default=len(text))
    return text[:cut]


class AwaresEvalRunner:
    """Answers harness requests with :func:`crop_on_demand` and keeps the cost of each.

    Args:
        config: Backend, mode and loop settings.
        backend: A backend object to use instead of ``config.backend`` (tests pass a ``ScriptedBackend``).
    """

    def __init__(self, config: AwaresEvalConfig | None = None, *, backend: Any = None) -> None:
        from awares_tool.backends import resolve_backend

        self.config = config or AwaresEvalConfig()
        self.backend = resolve_backend(backend if backend is not None else self.config.backend)
        self.records: list[SampleRecord] = []
        self._lock = threading.Lock()
        self._warned_multi = False

    def answer(self, context: str, visuals: Sequence[Any] | Any, gen_kwargs: dict[str, Any] | None = None, *,
               task: str = "", doc_id: Any = None) -> tuple[str, CropResult | None]:
        """The final answer to ``context`` about the document's image, and the loop's full result.

        A failure of the image or the backend (an ``AwaresError``) does not end the evaluation: the
        sample gets an empty answer (scored wrong) and its error is recorded. A document without an
        image is a task that does not fit AwaRes and raises ``ValueError``.
        """
        from awares_tool.episode.loop import crop_on_demand

        cfg = self.config
        items = [v for v in (visuals if isinstance(visuals, (list, tuple)) else [visuals]) if v is not None]
        if not items:
            raise ValueError(f"document {doc_id!r} of task {task!r} has no image; AwaRes answers questions "
                             "about an image, so evaluate it on image tasks only")
        if len(items) > 1:
            if cfg.multi_image == "error":
                raise ValueError(f"document {doc_id!r} of task {task!r} has {len(items)} images; AwaRes "
                                 "looks at one (set multi_image=first to use the first)")
            if not self._warned_multi:
                logger.warning("task %s has documents with several images; AwaRes uses the first", task)
                self._warned_multi = True
        settings, until = _settings(gen_kwargs or {}, cfg.max_new_tokens)
        question = context.replace("<image>", "").strip()
        record = SampleRecord(task=task, doc_id=_plain(doc_id), mode=cfg.mode, answer="", answered=False,
                              n_images=len(items))
        result: CropResult | None = None
        try:
            result = crop_on_demand(
                _image(items[0]), question, backend=self.backend, crop_set=cfg.crop_set, lowres=cfg.lowres,
                mode=cfg.mode, max_rounds=cfg.max_rounds, max_crops=cfg.max_crops, settings=settings,
                use_tools=cfg.use_tools, crop_max_pixels=cfg.crop_max_pixels,
            )
        except AwaresError as e:
            logger.warning("task %s doc %r failed: %s", task, doc_id, e)
            record.error = f"{type(e).__name__}: {e}"
        else:
            t = result.tokens
            record = record.model_copy(update=dict(
                answer=_cut(result.answer, until), answered=result.answered, regions=result.regions,
                rounds=result.rounds, tokens_spent=t.spent, full_tokens=t.full, rtr=t.rtr,
                pixel_ratio=t.pixel_ratio, wall_s=result.wall_s, error=result.error,
            ))
        self._keep(record)
        return record.answer, result

    def _keep(self, record: SampleRecord) -> None:
        with self._lock:
            self.records.append(record)
            if self.config.log_path is not None:
                self.config.log_path.parent.mkdir(parents=True, exist_ok=True)
                with self.config.log_path.open("a", encoding="utf-8") as f:
                    f.write(record.model_dump_json() + "\n")

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        """Per task: samples, mean RTR and pixel ratio, share answered without a crop, failures."""
        out: dict[str, dict[str, float | int | None]] = {}
        for task in sorted({r.task for r in self.records}):
            recs = [r for r in self.records if r.task == task]
            rtrs = [r.rtr for r in recs if r.rtr is not None]
            pix = [r.pixel_ratio for r in recs if r.pixel_ratio is not None and r.error is None]
            ok = [r for r in recs if r.error is None]
            out[task] = {
                "samples": len(recs),
                "mean_rtr": statistics.fmean(rtrs) if rtrs else None,
                "mean_pixel_ratio": statistics.fmean(pix) if pix else None,
                "no_crop_share": sum(not r.regions for r in ok) / len(ok) if ok else None,
                "failed": len(recs) - len(ok),
            }
        return out


_LMMS_CLASS: Any = None


def _lmms_class(name: str = "AwaresLMMS") -> Any:
    """Build ``AwaresLMMS`` (and its chat twin) on first use (lmms-eval's base class imports torch)."""
    global _LMMS_CLASS
    if _LMMS_CLASS is not None:
        return _LMMS_CLASS[name]
    try:
        from lmms_eval.api.instance import Instance
        from lmms_eval.api.model import lmms
    except ImportError as e:
        raise ImportError("AwaresLMMS needs lmms-eval: pip install lmms-eval (or, to keep your torch, "
                          "pip install --no-deps lmms-eval loguru evaluate)") from e
    try:  # lmms-eval >= 0.5 lets a model report token counts per sample
        from lmms_eval.api.instance import GenerationResult, TokenCounts
    except ImportError:
        GenerationResult = TokenCounts = None

    class AwaresLMMS(lmms):
        """lmms-eval ``generate_until`` through the AwaRes loop; keyword arguments: :class:`AwaresEvalConfig`.

        Args:
            backend_obj: A backend object (for tests and notebooks); the CLI passes ``backend`` specs.
            **kwargs: Fields of :class:`AwaresEvalConfig` (``backend``, ``mode``, ``log_path``, ...);
                harness-wide extras (``batch_size``, ``device``) are accepted and ignored.
        """

        def __init__(self, backend_obj: Any = None, **kwargs: Any) -> None:
            super().__init__()
            ignored = {k: kwargs.pop(k) for k in list(kwargs) if k not in AwaresEvalConfig.model_fields}
            if ignored:
                logger.info("ignoring model args not used by AwaRes: %s", ", ".join(sorted(ignored)))
            self.runner = AwaresEvalRunner(AwaresEvalConfig(**kwargs), backend=backend_obj)

        def generate_until(self, requests: list[Instance]) -> list[Any]:
            outputs: list[Any] = []
            for req in requests:
                context, visuals, gen_kwargs, doc_id, task = self._read(req.args)
                text, result = self.runner.answer(context, visuals, gen_kwargs, task=task, doc_id=doc_id)
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
                if GenerationResult is not None and result is not None:
                    counts = TokenCounts(input_tokens=sum(t.prompt_tokens for t in result.timings),
                                         output_tokens=sum(t.completion_tokens for t in result.timings))
                    outputs.append(GenerationResult(text=text, token_counts=counts))
                else:
                    outputs.append(text)
            for task, stats in self.runner.summary().items():
                logger.info("AwaRes %s on %s: %s", self.runner.config.mode, task, stats)
            return outputs

        def _read(self, args: Sequence[Any]) -> tuple[str, list[Any], dict[str, Any], Any, str]:
            """``(question, images, gen_kwargs, doc_id, task)`` from a simple or a chat request."""
            context, second, third, doc_id, task, split = args
            doc = self.task_dict[task][split][doc_id]
            if isinstance(second, dict):  # simple: (context, gen_kwargs, doc_to_visual, ...)
                return context, list(third(doc) or []), second, doc_id, task
            return (*_from_messages(second(doc), context), third or {}, doc_id, task)  # chat: doc_to_messages

        def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
            raise NotImplementedError("AwaRes generates answers; use generate_until tasks (not "
                                      "multiple-choice loglikelihood ones)")

        def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
            raise NotImplementedError("AwaRes runs its own crop rounds; use single-round generate_until "
                                      "tasks")

    class AwaresChatLMMS(AwaresLMMS):
        """The same model registered as lmms-eval's "chat" type (requests carry ``doc_to_messages``)."""

        is_simple = False

    AwaresLMMS.is_simple = True
    AwaresLMMS.__module__ = AwaresChatLMMS.__module__ = __name__
    _LMMS_CLASS = {"AwaresLMMS": AwaresLMMS, "AwaresChatLMMS": AwaresChatLMMS}
    return _LMMS_CLASS[name]


def _from_messages(messages: Any, context: str) -> tuple[str, list[Any]]:
    """The question text and images of a chat request's messages (lmms-eval ``doc_to_messages`` output).

    Parts are dicts (``{"type": "image", "url": ...}``) or lmms-eval's pydantic content objects; only user turns
    count; the request's ``context`` is the fallback question when the messages carry no text.
    """
    texts: list[str] = []
    images: list[Any] = []
    for msg in getattr(messages, "messages", messages) or []:
        role = msg.get("role") if isinstance(msg, dict) else getattr(msg, "role", None)
        if role not in (None, "user"):
            continue
        for part in (msg.get("content") if isinstance(msg, dict) else getattr(msg, "content", [])) or []:
            get = part.get if isinstance(part, dict) else lambda k, d=None, p=part: getattr(p, k, d)
            if get("type") == "image":
                images.append(get("url", get("image")))
            elif get("type") == "text" and get("text"):
                texts.append(str(get("text")))
    return ("\n".join(texts) or context), images


def manifests() -> list[Any]:
    """lmms-eval's registration of this model (entry point ``lmms_eval.models``: ``awares``).

    Called by the harness only, so lmms-eval is imported here, not when this module is.
    """
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id="awares", simple_class_path=f"{__name__}.AwaresLMMS",
                          chat_class_path=f"{__name__}.AwaresChatLMMS")]


def __getattr__(name: str) -> Any:  # PEP 562: ``from awares_train.eval.lmms import AwaresLMMS`` builds it lazily
    if name in ("AwaresLMMS", "AwaresChatLMMS"):
        return _lmms_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    """Score an AwaRes backend on lmms-eval tasks and print accuracy and the mean RTR per task."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--backend", default=None, help="backend spec; default: the embedded model")
    p.add_argument("--mode", default="awares",
                   choices=["awares", "lowres", "fullres", "all_crops", "full_on_request"])
    p.add_argument("--tasks", required=True, help="comma-separated lmms-eval task names")
    p.add_argument("--limit", type=float, default=None, help="samples per task (or a fraction)")
    p.add_argument("--lowres", default=None)
    p.add_argument("--crop-set", default=None)
    p.add_argument("--log", type=Path, default=None, help="JSONL of per-sample answers and costs")
    args = p.parse_args(argv)
    try:
        model_cls = _lmms_class()
    except ImportError as e:
        print(e, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.utils import make_table

    model = model_cls(backend=args.backend, mode=args.mode, lowres=args.lowres, crop_set=args.crop_set,
                       log_path=args.log)
    results = simple_evaluate(model=model, tasks=args.tasks.split(","), limit=args.limit, batch_size=1)
    if results is not None:
        print(make_table(results))
    print(json.dumps(model.runner.summary(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
