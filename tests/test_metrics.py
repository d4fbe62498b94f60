"""Answer metrics: the official rules of each benchmark, and the doctests that document them."""

import doctest

import pytest

import awares_train.metrics as metrics
from awares_train.metrics import anls, exact_match, multiple_choice, ocrbench_match, pope_yes_no, relaxed_accuracy, score


def test_doctests_pass():
    result = doctest.testmod(metrics)
    assert result.attempted > 10 and result.failed == 0


def test_relaxed_accuracy_bounds_and_percent():
    assert relaxed_accuracy("105", ["100"]) == 1.0
    assert relaxed_accuracy("105.1", ["100"]) == 0.0
    assert relaxed_accuracy("0", ["0"]) == 1.0 and relaxed_accuracy("0.01", ["0"]) == 0.0
    assert relaxed_accuracy("25%", ["0.25"]) == 1.0
    assert relaxed_accuracy("1,000", ["1000"]) == 1.0


def test_anls_threshold_and_best_reference():
    assert anls("abcd", ["abce"]) == pytest.approx(0.75)
    assert anls("ab", ["cd"]) == 0.0  # normalised distance 1.0 >= 0.5
    assert anls("Hello  World", ["nope", "hello world"]) == 1.0


def test_exact_and_ocrbench_and_mc_and_pope():
    assert exact_match(" Blue. ", ["blue"]) == 1.0
    assert ocrbench_match("It reads 48213.", ["48213"]) == 1.0 and ocrbench_match("4821", ["48213"]) == 0.0
    assert multiple_choice("B", ["B"]) == 1.0 and multiple_choice("Option (A)", ["B"]) == 0.0
    assert pope_yes_no("no", ["no"]) == 1.0 and pope_yes_no("yes", ["no"]) == 0.0


def test_score_dispatch_and_unknown_metric():
    assert score("anls", "48213", "48213") == 1.0
    with pytest.raises(ValueError, match="known metrics"):
        score("bleu", "a", ["a"])
