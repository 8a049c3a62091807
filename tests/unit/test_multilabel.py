"""The multi-label rule on its own: views, scores, fitted cuts, and the CSV form of a label list."""

from __future__ import annotations

import numpy as np
import pytest

from clipzero.errors import ConfigError
from clipzero.images import view_boxes
from clipzero.multilabel import MultiLabelRule, check_views, fit_rule, label_scores
from clipzero.outputs import join_labels, split_labels


def test_views_are_the_whole_image_then_half_size_crops() -> None:
    assert view_boxes(1) == [(0.0, 0.0, 1.0, 1.0)]
    five, ten = view_boxes(5), view_boxes(10)
    assert len(five) == 5 and len(ten) == 10 and five[0] == ten[0] == (0.0, 0.0, 1.0, 1.0)
    assert all(round(r - x, 6) == 0.5 and round(b - y, 6) == 0.5 for x, y, r, b in ten[1:])
    assert {(x, y) for x, y, _, _ in ten[1:]} == {(x, y) for x in (0, 0.25, 0.5) for y in (0, 0.25, 0.5)}
    with pytest.raises(ConfigError, match="1, 5, 10"):
        check_views(3)
    assert check_views(None) == 10


def test_a_label_wins_a_view_only_against_the_others_and_none_of_these() -> None:
    rule = MultiLabelRule(similarity=0.5, temperature=20.0, cut=0.5, views=2)
    sims = np.array([[[0.9, 0.3, 0.2], [0.2, 0.8, 0.3]]])  # view 0 shows label 0, view 1 shows label 1
    scores, where = label_scores(sims, rule)
    assert scores[0, 0] > 0.9 and scores[0, 1] > 0.9 and scores[0, 2] < 0.1
    assert list(where[0, :2]) == [0, 1]
    few = np.array([[[0.35, 0.3], [0.3, 0.32]]])  # two labels, neither present: below the "none" logit
    assert (label_scores(few, rule)[0] < 0.5).all()
    siglip = label_scores(np.array([[[0.1], [0.3]]]), rule, sigmoid=(10.0, -2.0))[0]
    assert siglip[0, 0] == pytest.approx(1 / (1 + np.exp(-(3.0 - 2.0))))


def test_fitted_cuts_separate_present_from_absent_labels() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random((60, 12)) < 0.2
    truth[:, 0] = True
    sims = rng.normal(0.3, 0.03, (60, 5, 12))
    view = rng.integers(0, 5, size=(60, 12))
    rows, cols = np.nonzero(truth)
    sims[rows, view[rows, cols], cols] += 0.25  # a present label stands out in one view
    rule = fit_rule(sims, truth, logit_scale=50.0, views=5)
    scores = label_scores(sims, rule)[0]
    chosen = scores >= rule.cut
    assert rule.f1 > 0.9 and ((chosen == truth).mean() > 0.95)
    with pytest.raises(ConfigError):
        fit_rule(sims, np.zeros_like(truth), 50.0, 5)


def test_a_list_of_labels_is_one_csv_cell_and_back() -> None:
    for labels in (["red circle", "blue star"], ["a;b", "c\\d", "plain"], [], ["one"]):
        assert split_labels(join_labels(labels)) == labels
    assert join_labels(["a;b", "c"]) == "a\\;b;c"


def test_when_nothing_separates_the_cut_keeps_the_share_that_applied() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random((80, 20)) < 0.1
    truth[0, 0], truth[0, 1] = True, False
    rule = fit_rule(rng.normal(0.3, 0.05, (80, 3, 20)), truth, logit_scale=50.0, views=3)  # scores know nothing
    assert not rule.separable and rule.f1 < 0.5
    fresh = label_scores(rng.normal(0.3, 0.05, (80, 3, 20)), rule)[0] >= rule.cut
    assert 0.02 < fresh.mean() < 0.3  # about the share that applied: neither every label nor none
