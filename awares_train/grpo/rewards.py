"""The composite reward, one plain function per term (the paper's default: ``R = w_acc * R_ans - C_tool``).

Terms (each tested on its own, each with its weight in :class:`~awares_train.grpo.config.AwaresGRPOConfig`):

* :func:`answer_score` (``R_ans``): correctness of the final answer, by sentence-embedding cosine
  similarity (paper), ANLS, exact match, relaxed accuracy or an LLM judge. Weight ``accuracy_weight`` (10):
  embedding similarity barely separates near-miss numbers ("48213" vs "48218": 0.967), so without the
  weight a wrong low-res answer would outscore a right answer that paid for a crop.
* :func:`tool_cost` (``C_tool``): 2.0 for a missed needed crop, ``0.25 + 0.01 x requested area fraction``
  for any request, 0 otherwise. Weight ``tool_cost_weight`` (1), ramped in by :func:`warmup_factor`.
* :func:`token_cost`: ``crop tokens / full-image tokens`` (the RTR of what was fetched). Weight 0 by default.
* :func:`format_score`: 1 when the rollout follows the protocol (at most one request, then an answer). Weight 0.

:func:`build_reward_funcs` wraps them as TRL reward functions (named ``answer``, ``tool_cost``,
``token_cost``, ``format``, so TRL logs ``rewards/<name>/mean``) and logs the rollout statistics.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from awares_tool.protocol import GET_CROPS_TOOL, FinalAnswer

__all__ = ["final_answer", "answer_score", "tool_cost", "token_cost", "format_score", "warmup_factor",
           "composite_reward", "build_reward_funcs", "CORRECTNESS"]

log = logging.getLogger(__name__)

CORRECTNESS = ("embedding", "anls", "exact", "relaxed", "judge")
Judge = Callable[[str, str, Sequence[str]], float]


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")


def final_answer(completion: Sequence[dict[str, Any]] | str) -> str | None:
    """The text of the rollout's last assistant message, or ``None`` when it ended on a tool call.

    >>> final_answer([{"role": "assistant", "content": "", "tool_calls": [{}]}, {"role": "tool", "content": "x"},
    ...               {"role": "assistant", "content": "48213"}])
    '48213'
    >>> final_answer([{"role": "assistant", "content": "", "tool_calls": [{}]}]) is None
    True
    >>> final_answer("<think>the code is tiny</think> 48213"), final_answer("<think>cut off")
    ('48213', None)

    The answer is read with the protocol's rule (``FinalAnswer``): reasoning inside ``<think>`` is not part of
    it, and a reply with no answer (empty, or only reasoning) is ``None``, like a rollout that never answered.
    """
    if isinstance(completion, str):
        text = completion
    elif not completion:
        return None
    else:
        last = completion[-1]
        if last.get("role") != "assistant" or last.get("tool_calls"):
            return None
        text = _text(last.get("content"))
    answer = FinalAnswer.from_reply(text)
    return None if answer.empty else answer.text


def answer_score(prediction: str | None, references: Sequence[str], *, method: str = "embedding",
                 embedder: Any = None, judge: Judge | None = None, question: str = "") -> float:
    """``R_ans`` in ``[0, 1]``: how correct ``prediction`` is; 0 for no answer.

    >>> answer_score("48213", ["48213"], method="exact"), answer_score("48218", ["48213"], method="anls")
    (1.0, 0.8)
    """
    if prediction is None or not prediction.strip():
        return 0.0
    if method == "embedding":
        if embedder is None:
            from awares_train.embedding import get_embedder

            embedder = get_embedder()
        return float(embedder.similarity(prediction, list(references)))
    if method == "judge":
        if judge is None:
            raise ValueError("correctness 'judge' needs a judge function (config judge: 'module:function')")
        return float(judge(question, prediction, list(references)))
    if method in ("anls", "exact", "relaxed"):
        from awares_train.metrics import score

        return score(method, prediction, list(references))
    raise ValueError(f"correctness must be one of {CORRECTNESS}, got {method!r}")


def tool_cost(needed: bool, requested: bool, area_fraction: float = 0.0, *, missed_cost: float = 2.0,
              request_cost: float = 0.25, area_cost: float = 0.01) -> float:
    """``C_tool`` of the paper: the price of the crop decision.

    >>> tool_cost(needed=True, requested=False)
    2.0
    >>> tool_cost(needed=True, requested=True, area_fraction=0.25)
    0.2525
    >>> tool_cost(needed=False, requested=False)
    0.0
    """
    if requested:
        return request_cost + area_cost * area_fraction
    return missed_cost if needed else 0.0


def token_cost(crop_rtr: float) -> float:
    """Token-based cost: visual tokens of the fetched crops over those of the full image.

    >>> token_cost(0.5)
    0.5
    """
    return max(0.0, float(crop_rtr))


def format_score(completion: Sequence[dict[str, Any]]) -> float:
    """1.0 when the rollout follows the protocol: at most one ``get_crops`` call, and a final answer.

    >>> format_score([{"role": "assistant", "content": "blue"}])
    1.0
    >>> format_score([{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "zoom"}}]}])
    0.0
    """
    calls = [c for m in completion if m.get("role") == "assistant" for c in (m.get("tool_calls") or [])]
    if any((c.get("function") or {}).get("name") != GET_CROPS_TOOL for c in calls):
        return 0.0
    if len(calls) > 1 or any(m.get("role") == "tool" and "error" in _text(m.get("content")) for m in completion):
        return 0.0
    return 1.0 if final_answer(completion) else 0.0


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Share of the cost penalty applied at ``step``: a linear ramp from 0 to 1 over ``warmup_steps``.

    Starting with a small penalty keeps early policies from learning "never crop" before the answer
    reward has taught them what crops are good for (one of the collapse remedies).

    >>> [warmup_factor(s, 4) for s in (0, 2, 4, 9)], warmup_factor(0, 0)
    ([0.0, 0.5, 1.0, 1.0], 1.0)
    """
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, max(0.0, step / warmup_steps))


def composite_reward(r_ans: float, c_tool: float, *, accuracy_weight: float = 10.0, tool_cost_weight: float = 1.0,
                     c_tokens: float = 0.0, token_cost_weight: float = 0.0, fmt: float = 0.0,
                     format_weight: float = 0.0) -> float:
    """The total TRL computes from the term columns: ``sum(weight_i * term_i)`` (costs enter negated).

    >>> composite_reward(1.0, 0.2525) > composite_reward(0.967, 2.0)
    True
    """
    return accuracy_weight * r_ans - tool_cost_weight * c_tool - token_cost_weight * c_tokens + format_weight * fmt


def load_judge(spec: str) -> Judge:
    """Import a judge ``"package.module:function"`` with signature ``(question, prediction, references) -> float``."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"judge must look like 'package.module:function', got {spec!r}")
    return getattr(importlib.import_module(module), name)


def build_reward_funcs(cfg: Any) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """TRL reward functions and their weights from a GRPO config (terms with weight 0 are left out).

    The ``answer`` function also logs ``awares/accuracy`` (``cfg.accuracy_metric``); ``tool_cost`` logs
    ``awares/tool_call_rate``, ``awares/no_crop_share``, ``awares/crops_per_sample``, ``awares/rtr``,
    ``awares/missed_crop_rate`` and ``awares/penalty_scale`` from the rollouts' environments.
    """
    from awares_train.metrics import score

    judge = load_judge(cfg.judge) if cfg.judge else None
    embedder_dir = cfg.embedding_model

    def answer(completions: list, answers: list, question: list | None = None, log_metric: Any = None,
               **_: Any) -> list[float]:
        embedder = None
        if cfg.correctness == "embedding":
            from awares_train.embedding import get_embedder

            embedder = get_embedder(embedder_dir)
        out = []
        for i, (comp, refs) in enumerate(zip(completions, answers)):
            pred = final_answer(comp)
            out.append(answer_score(pred, refs, method=cfg.correctness, embedder=embedder, judge=judge,
                                    question=(question or [""] * len(completions))[i]))
            if log_metric is not None:
                log_metric("awares/accuracy", score(cfg.accuracy_metric, pred or "", refs) if pred else 0.0)
        return out

    def tool_cost_fn(completions: list, environments: list | None = None, trainer_state: Any = None,
                     log_metric: Any = None, **_: Any) -> list[float]:
        scale = warmup_factor(getattr(trainer_state, "global_step", 0) or 0, cfg.penalty_warmup_steps)
        out = []
        for env in environments or []:
            c = tool_cost(env.needs_crop, env.requested, env.area_fraction, missed_cost=cfg.missed_crop_cost,
                          request_cost=cfg.request_cost, area_cost=cfg.area_cost)
            out.append(-scale * c)
            if log_metric is not None:
                log_metric("awares/tool_call_rate", float(env.requested))
                log_metric("awares/no_crop_share", float(not env.requested))
                log_metric("awares/crops_per_sample", float(len(env.regions)))
                log_metric("awares/missed_crop_rate", float(env.needs_crop and not env.requested))
                if env.rtr is not None:
                    log_metric("awares/rtr", env.rtr)
        if log_metric is not None:
            log_metric("awares/penalty_scale", scale)
        return out

    def token_cost_fn(completions: list, environments: list | None = None, trainer_state: Any = None,
                      **_: Any) -> list[float]:
        scale = warmup_factor(getattr(trainer_state, "global_step", 0) or 0, cfg.penalty_warmup_steps)
        return [-scale * token_cost(env.crop_rtr) for env in environments or []]

    def format_fn(completions: list, **_: Any) -> list[float]:
        return [format_score(c) for c in completions]

    answer.__name__, tool_cost_fn.__name__ = "answer", "tool_cost"
    token_cost_fn.__name__, format_fn.__name__ = "token_cost", "format"
    funcs: list[Callable[..., list[float]]] = [answer, tool_cost_fn]
    weights = [cfg.accuracy_weight, cfg.tool_cost_weight]
    if cfg.token_cost_weight:
        funcs.append(token_cost_fn)
        weights.append(cfg.token_cost_weight)
    if cfg.format_weight:
        funcs.append(format_fn)
        weights.append(cfg.format_weight)
    return funcs, weights
