"""Scoring arithmetic against hand-computed numbers: acc, acc_norm, standard errors, the table."""

from __future__ import annotations

import math

import pytest

from harness.evaluate.multiple_choice import MCExample, examples_digest, pick, score_examples
from harness.evaluate.results import TaskResult, format_results
from harness.evaluate.stats import block_mean_stderr, mean_stderr

# Log-likelihoods a fake model gives each (context, continuation): known numbers, no model.
FAKE = {
    ("Q1", " a"): -2.0, ("Q1", " bbbbbbbbb"): -3.0,  # acc picks " a"; per char -1.0 vs -0.3
    ("Q2", " yes"): -1.0, ("Q2", " no"): -1.5,  # both pick " yes": -0.25 vs -0.5 per char
    ("Q3", " x"): -4.0, ("Q3", " yy"): -5.0, ("Q3", " zzz"): -6.0,  # acc " x"; norm " zzz"
}
EXAMPLES = [
    MCExample("Q1", (" a", " bbbbbbbbb"), (1,)),  # acc wrong, acc_norm right
    MCExample("Q2", (" yes", " no"), (0,)),  # both right
    MCExample("Q3", (" x", " yy", " zzz"), (1,)),  # both wrong
]


def fake_loglikelihood(pairs):
    return [FAKE[pair] for pair in pairs]


def test_pick_uses_raw_and_per_character_loglikelihood():
    assert pick([-2.0, -3.0], [" a", " bbbbbbbbb"]) == (0, 1)
    assert pick([-4.0, -5.0, -6.0], [" x", " yy", " zzz"]) == (0, 2)  # -2, -1.67, -1.5 per char
    assert pick([-1.0, -1.0], ["ab", "cd"]) == (0, 0)  # ties go to the first, as np.argmax


def test_acc_and_acc_norm_with_standard_errors_by_hand():
    scores = score_examples(EXAMPLES, fake_loglikelihood)
    # acc: [0, 1, 0] -> mean 1/3; s^2 = ((1/3)^2 * 2 + (2/3)^2) / 2 = 1/3; stderr = sqrt(1/9)
    assert scores["acc"] == pytest.approx(1 / 3)
    assert scores["acc_stderr"] == pytest.approx(1 / 3)
    # acc_norm: [1, 1, 0] -> 2/3, same spread
    assert scores["acc_norm"] == pytest.approx(2 / 3)
    assert scores["acc_norm_stderr"] == pytest.approx(1 / 3)
    assert scores["chance"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 3) / 3)


def test_several_gold_choices_count_as_correct():
    example = MCExample("Q3", (" x", " yy", " zzz"), (0, 2))
    scores = score_examples([example, example], fake_loglikelihood)
    assert scores["acc"] == 1.0 and scores["acc_norm"] == 1.0 and scores["acc_stderr"] == 0.0


def test_standard_errors():
    assert mean_stderr([1.0, 0.0, 1.0, 1.0]) == pytest.approx(math.sqrt(0.25 / 4))
    assert math.isnan(mean_stderr([1.0]))
    # blocks of 2: means 1, 3, 5 (the trailing 9 is a partial block); stderr of those: 2/sqrt(3)
    assert block_mean_stderr([0, 2, 2, 4, 4, 6, 9], 2) == pytest.approx(2 / math.sqrt(3))


def test_digest_changes_with_any_choice():
    other = [*EXAMPLES[:2], MCExample("Q3", (" x", " yy", " zz"), (1,))]
    assert examples_digest(EXAMPLES) == examples_digest(list(EXAMPLES))
    assert examples_digest(EXAMPLES) != examples_digest(other)


def test_results_become_metric_keys_and_a_table():
    result = TaskResult("mc:next-line", 3, {"acc": 0.5, "acc_stderr": 0.1, "acc_norm": 0.25,
                                            "acc_norm_stderr": 0.05}, version="1", digest="ab")
    assert result.metric_dict() == {
        "eval/mc.next-line/acc": 0.5, "eval/mc.next-line/acc_stderr": 0.1,
        "eval/mc.next-line/acc_norm": 0.25, "eval/mc.next-line/acc_norm_stderr": 0.05,
        "eval/mc.next-line/n": 3.0}
    assert result.tag_dict() == {"eval/mc.next-line/version": "1",
                                 "eval/mc.next-line/digest": "ab"}
    lines = format_results({"mc:next-line": result}).splitlines()
    assert lines[0].split() == ["task", "version", "metric", "value", "stderr", "n"]
    assert lines[2].split() == ["mc:next-line", "1", "acc", "0.5000", "±", "0.1000", "3"]
    assert lines[3].split() == ["acc_norm", "0.2500", "±", "0.0500"]
