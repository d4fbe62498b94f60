"""Reward terms of GRPO: each moves the way the method says, and the default weights rank answers right."""

from __future__ import annotations

import pytest

from awares_train.grpo.rewards import (
    answer_score,
    composite_reward,
    final_answer,
    format_score,
    token_cost,
    tool_cost,
    warmup_factor,
)


def test_tool_cost_paper_values():
    assert tool_cost(needed=True, requested=False) == 2.0
    assert tool_cost(needed=False, requested=False) == 0.0
    assert tool_cost(needed=False, requested=True, area_fraction=0.5) == pytest.approx(0.255)
    assert tool_cost(needed=True, requested=True, area_fraction=0.25) == pytest.approx(0.2525)


def test_more_crops_same_answer_lower_reward():
    one = composite_reward(1.0, tool_cost(True, True, 0.25))
    two = composite_reward(1.0, tool_cost(True, True, 0.75))
    assert one > two
    assert composite_reward(1.0, 0.0, c_tokens=0.25, token_cost_weight=1.0) > composite_reward(
        1.0, 0.0, c_tokens=token_cost(0.5), token_cost_weight=1.0)


def test_answer_score_methods():
    assert answer_score("48213", ["48213"], method="exact") == 1.0
    assert answer_score("48218", ["48213"], method="exact") == 0.0
    assert 0.0 < answer_score("48218", ["48213"], method="anls") < 1.0
    assert answer_score(None, ["48213"], method="exact") == 0.0
    judged = answer_score("x", ["y"], method="judge", judge=lambda q, p, r: 0.7)
    assert judged == 0.7
    with pytest.raises(ValueError):
        answer_score("x", ["y"], method="nope")


def test_final_answer_and_format():
    call = {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
                                                                "function": {"name": "get_crops", "arguments": {}}}]}
    done = [call, {"role": "tool", "content": "crops"}, {"role": "assistant", "content": "48213"}]
    assert final_answer(done) == "48213"
    assert final_answer([call]) is None
    assert format_score(done) == 1.0
    assert format_score([call]) == 0.0
    assert format_score([call, {"role": "tool", "content": "x"}, call]) == 0.0


def test_warmup_ramps_penalty():
    assert [warmup_factor(s, 10) for s in (0, 5, 10, 20)] == [0.0, 0.5, 1.0, 1.0]
    assert warmup_factor(3, 0) == 1.0


def _embedder():
    pytest.importorskip("transformers")
    from awares_train.embedding import get_embedder

    try:
        return get_embedder()
    except ImportError as e:  # MissingExtraError: the weights package is not installed
        pytest.skip(str(e))


@pytest.mark.slow
def test_embedder_scores_match_the_reference_pooling():
    # Measured with the hand-written BERT + mean pooling + L2 norm used before sentence-transformers.
    emb = _embedder()
    assert emb.similarity("48218", ["48213"]) == pytest.approx(0.966619, abs=1e-5)
    assert emb.similarity("the total is 37.50", ["37.5"]) == pytest.approx(0.674670, abs=1e-5)
    assert emb.similarity("a small cat on the mat", ["a kitten sitting on a rug", "dog"]) == pytest.approx(
        0.602369, abs=1e-5)  # the best of several references
    assert emb.similarity("anything", []) == 0.0


@pytest.mark.slow
def test_default_weights_correct_cropped_outranks_wrong_uncropped():
    emb = _embedder()
    sim_wrong = answer_score("48218", ["48213"], embedder=emb)
    sim_right = answer_score("48213", ["48213"], embedder=emb)
    assert sim_right == pytest.approx(1.0, abs=1e-4)
    assert sim_wrong > 0.9  # why the accuracy weight is needed: near-misses embed almost identically
    right_cropped = composite_reward(sim_right, tool_cost(needed=True, requested=True, area_fraction=0.25))
    wrong_uncropped = composite_reward(sim_wrong, tool_cost(needed=True, requested=False))
    assert right_cropped > wrong_uncropped
    # Even when the label says no crop was needed, paying for one to be right beats being wrong for free.
    assert right_cropped > composite_reward(sim_wrong, tool_cost(needed=False, requested=False))
    # Without the weight the ranking flips in the "not needed" case: the reason for accuracy_weight=10.
    assert composite_reward(sim_right, 0.2525, accuracy_weight=1.0) < composite_reward(sim_wrong, 0.0,
                                                                                       accuracy_weight=1.0)
