"""Judges: the pairwise labelling rule with metric, LLM (through a real scripted backend) and embedding judges."""

import pytest

from awares_tool.backends.scripted import ScriptedBackend
from awares_train.data.judges import (
    JudgeError,
    LLMJudge,
    MetricJudge,
    get_judge,
    label_for,
    verdict_from_scores,
)


@pytest.mark.parametrize(
    "low, full, verdict, label",
    [("48213", "48213", "tie", "direct"), ("4821?", "48213", "fullres", "crop"),
     ("48213", "9", "lowres", "direct"), ("1", "2", "neither", "drop")],
)
def test_exact_judge_labels(low, full, verdict, label):
    j = MetricJudge("exact").judge("code?", ["48213"], low, full)
    assert j.verdict == verdict and label_for(j.verdict) == label


def test_auto_judge_uses_the_sources_metric():
    judge = MetricJudge("auto")
    # ANLS (DocVQA): a near-miss low-res number loses to the exact full-res one.
    docvqa = judge.judge("q", ["48213"], "48218", "48213", source="docvqa")
    assert (docvqa.verdict, docvqa.lowres_score, docvqa.raw) == ("fullres", pytest.approx(0.8), "anls")
    # Relaxed accuracy (ChartQA): 3% off is still right, so both tie and no crop is needed.
    assert judge.judge("q", ["100"], "103", "100", source="chartqa").verdict == "tie"
    assert judge.judge("q", ["100"], "103", "100", source="synthetic").verdict == "fullres"


def test_verdict_tie_margin():
    assert verdict_from_scores(0.81, 0.84, threshold=0.8, tie_margin=0.05) == "tie"
    assert verdict_from_scores(0.70, 0.90, threshold=0.8, tie_margin=0.05) == "fullres"


def _llm(reply_for):
    prompts = []

    def reply(messages):
        prompts.append(messages[-1].text_content)
        return reply_for(messages[-1].text_content)

    return ScriptedBackend(reply, token_family=None), prompts


def test_llm_judge_maps_positions_back_whatever_the_order():
    # A judge that always prefers the answer "48213", wherever it is shown.
    def prefer(prompt):
        first = prompt.split("Answer 1: ")[1].split("\n")[0]
        return "1" if first == "48213" else "Answer 2 is better."

    backend, prompts = _llm(prefer)
    judge = LLMJudge(backend, seed=3)
    verdicts = {judge.judge("q", ["48213"], "4821", "48213", record_id=f"r{i}").verdict for i in range(12)}
    assert verdicts == {"fullres"}
    firsts = {p.split("Answer 1: ")[1].split("\n")[0] for p in prompts}
    assert firsts == {"4821", "48213"}  # the order really was shuffled across records
    again = LLMJudge(backend, seed=3)
    before = len(prompts)
    again.judge("q", ["48213"], "4821", "48213", record_id="r0")
    assert prompts[before] == prompts[0]  # deterministic with the seed


@pytest.mark.parametrize("reply, verdict", [("TIE", "tie"), ("neither is right: NEITHER", "neither")])
def test_llm_judge_tie_and_neither(reply, verdict):
    backend, _ = _llm(lambda p: reply)
    assert LLMJudge(backend, shuffle=False).judge("q", ["a"], "a", "a").verdict == verdict


def test_llm_judge_unparseable_reply_is_an_error():
    backend, _ = _llm(lambda p: "I am not sure")
    with pytest.raises(JudgeError, match="names none"):
        LLMJudge(backend).judge("q", ["a"], "a", "b")


def test_get_judge_specs():
    assert get_judge("anls").name == "metric:anls"
    assert get_judge("exact", threshold=1.0).threshold == 1.0
    with pytest.raises(ValueError, match="unknown metric"):
        get_judge("bleu")
    with pytest.raises(ValueError, match="needs a backend"):
        get_judge("llm")


@pytest.mark.slow  # imports torch + transformers: ~10-90 s on a busy 2-core machine
def test_embedding_judge_offline():
    pytest.importorskip("transformers")
    pytest.importorskip("all_minilm_l6_v2")
    judge = get_judge("embedding")
    right = judge.judge("what color?", ["red"], "blue", "red")
    assert right.verdict == "fullres" and right.fullres_score > 0.99 > right.lowres_score
    assert judge.judge("what color?", ["red"], "red", "red").verdict == "tie"
