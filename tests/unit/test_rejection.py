"""The rejection threshold from scores, the rule cache, and the checks on rejection requests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipzero.errors import ConfigError
from clipzero.rejection import RejectionRule, check_reject, rule_from_scores


def test_a_separable_pair_gets_a_cut_in_the_middle_of_the_gap() -> None:
    rule = rule_from_scores([0.80, 0.85, 0.90], [0.40, 0.50, 0.60], "reference")
    assert rule.separable and rule.accuracy == 1.0
    assert rule.threshold == pytest.approx(0.70)  # between the highest miss and the lowest fit
    assert rule.score(0.70) == pytest.approx(0.0) and rule.score(0.85) > 0 > rule.score(0.5)


def test_overlap_takes_the_best_balanced_cut() -> None:
    fits = [0.3, 0.7, 0.8, 0.9, 0.95]
    misses = [0.1, 0.2, 0.3, 0.4, 0.75]
    rule = rule_from_scores(fits, misses, "calibration")
    kept = np.mean(np.array(fits) >= rule.threshold)
    rejected = np.mean(np.array(misses) < rule.threshold)
    assert (kept + rejected) / 2 == pytest.approx(rule.accuracy) and rule.accuracy == pytest.approx(0.8)
    assert 0.4 < rule.threshold <= 0.7 and rule.source == "calibration"


def test_an_inseparable_pair_cuts_between_the_medians_and_says_so() -> None:
    rng = np.random.default_rng(0)
    same = rng.normal(0.1, 0.02, 200)
    rule = rule_from_scores(same[:100], same[100:], "reference")
    assert not rule.separable
    assert rule.threshold == pytest.approx((np.median(same[:100]) + np.median(same[100:])) / 2)


def test_an_empty_side_is_an_error() -> None:
    with pytest.raises(ConfigError, match="fit a label and images that fit none"):
        rule_from_scores([0.9], [], "reference")


@pytest.mark.parametrize(("reject", "cut", "message"), [("always", None, "reject must be"),
                                                        (None, 1.5, "between -1 and 1")])  # fmt: skip
def test_wrong_rejection_requests_are_refused(reject: str | None, cut: float | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_reject(reject, cut)


def test_the_auto_rule_is_computed_once_and_kept_on_disk(tiny_encoder: object, tmp_path: Path) -> None:
    from clipzero.rejection import clear_rule_cache
    from clipzero.zeroshot import ZeroShotClassifier

    classifier = ZeroShotClassifier(tiny_encoder, ["red", "green"], templates="photo")  # type: ignore[arg-type]
    rule = classifier.rejection_rule("auto")
    stored = json.loads((tmp_path / "clipzero-home" / "rejection.json").read_text())
    assert [RejectionRule(**value) for value in stored.values()] == [rule]
    clear_rule_cache()  # a new process: the rule comes from disk, not from another computation
    stored[next(iter(stored))]["threshold"] = 0.123
    (tmp_path / "clipzero-home" / "rejection.json").write_text(json.dumps(stored))
    assert classifier.rejection_rule("auto").threshold == 0.123
    assert classifier.rejection_rule(None, 0.5) == RejectionRule(0.5, source="min-similarity")
