import math

import numpy as np
import pytest

from rmsweep.analysis import scoring


def _rewardbench_rows(accuracy_by_subset, n=100):
    """n rows per subset, the first round(accuracy x n) won, the rest lost."""
    rows = []
    for subset, accuracy in accuracy_by_subset.items():
        wins = round(accuracy * n)
        rows += [{"id": f"{subset}-{i}", "subset": subset, "scores": [1.0, 0.0 if i < wins else 2.0]}
                 for i in range(n)]
    return rows


def test_ties_are_losses():
    assert scoring.pairwise_accuracy([1.0, 2.0, 3.0], [1.0, 1.0, 4.0]) == pytest.approx(1 / 3)
    rows = [{"id": 0, "subset": "hep-go", "scores": [1.0, 1.0]}, {"id": 1, "subset": "hep-go", "scores": [2.0, 1.0]}]
    assert scoring.rewardbench(rows)["subsets"]["hep-go"] == 0.5


def test_sections_weight_subsets_by_published_counts():
    # math-prm counts 984 against hep-python's 164.
    result = scoring.rewardbench(_rewardbench_rows({"math-prm": 0.5, "hep-python": 1.0}))
    assert result["sections"]["Reasoning"] == pytest.approx((984 * 0.5 + 164 * 1.0) / (984 + 164))
    assert result["overall"] == pytest.approx(result["sections"]["Reasoning"])


def test_overall_is_the_unweighted_mean_of_sections_reference_sanity_value():
    # benchmarks.md: sections .6089, .4496, .7216, .4668 have a four-section mean of .5617.
    rows = _rewardbench_rows({"alpacaeval-easy": 0.6089, "mt-bench-hard": 0.4496, "donotanswer": 0.7216,
                              "hep-go": 0.4668}, n=10_000)
    result = scoring.rewardbench(rows)
    assert [round(result["sections"][s], 4) for s in ("Chat", "Chat Hard", "Safety", "Reasoning")] == \
        [0.6089, 0.4496, 0.7216, 0.4668]
    assert result["overall"] == pytest.approx(0.5617, abs=1e-4)
    assert "overall_with_prior_sets" not in result


def test_prior_sets_variant_weights_the_four_sections_twice():
    rows = _rewardbench_rows({"alpacaeval-easy": 0.6, "mt-bench-hard": 0.4, "donotanswer": 0.7, "hep-go": 0.5,
                              "shp": 0.5, "summarize": 0.7})
    result = scoring.rewardbench(rows)
    assert result["sections"]["Prior Sets"] == pytest.approx(0.6)
    assert result["overall"] == pytest.approx((0.6 + 0.4 + 0.7 + 0.5) / 4)  # the headline ignores Prior Sets
    assert result["overall_with_prior_sets"] == pytest.approx((2 * (0.6 + 0.4 + 0.7 + 0.5) + 0.6) / 9)


def test_unknown_subset_is_refused():
    with pytest.raises(ValueError, match="unknown RewardBench subset"):
        scoring.rewardbench([{"id": 0, "subset": "not-a-subset", "scores": [1.0, 0.0]}])


@pytest.mark.parametrize("scores, credit", [
    ([3.0, 1.0, 2.0, 0.0], 1.0),         # unique maximum
    ([3.0, 3.0, 2.0, 0.0], 1 / 2),       # two-way tie at the top
    ([3.0, 3.0, 3.0, 0.0], 1 / 3),
    ([3.0, 3.0, 3.0, 3.0], 1 / 4),
    ([2.0, 3.0, 3.0, 0.0], 0.0),         # a rejected one scores higher
])
def test_best_of_4_gives_1_over_k_for_k_way_ties_at_the_top(scores, credit):
    assert scoring.best_of_n_credit(scores) == pytest.approx(credit)


def _ties_rows():
    return [
        {"id": "tied:1", "subset": "Ties", "scores": [5.0, 4.0, 1.0], "num_correct": 2},  # margin 3, spread 1
        {"id": "ref:1", "subset": "Ties", "scores": [3.0, 2.0], "num_correct": 1},        # margin 1
        {"id": "tied:2", "subset": "Ties", "scores": [2.0, 1.0, 3.0], "num_correct": 2},  # margin -2, spread 1
        {"id": "ref:2", "subset": "Ties", "scores": [1.0, 2.0], "num_correct": 1},        # margin -1
    ]


def test_ties_formula_on_a_hand_computed_example():
    # accuracy: tied 1/2, ref 1/2; margin_tied > spread: k=1 yes, k=2 no -> 1/2;
    # min(margin_ref, margin_tied) > spread: min(1, 3) = 1 > 1 no, -2 > 1 no -> 0;
    # tanh(min / spread - 1): tanh(0) = 0 and tanh(-3) -> mean -0.4975.
    expected = 0.30 * 0.5 + 0.30 * 0.5 + 0.20 * 0.5 + 0.20 * 0.0 + 0.01 * (math.tanh(0) + math.tanh(-3)) / 2
    assert scoring.ties_score(_ties_rows()) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.395025, abs=1e-6)


def test_ties_nan_terms_count_as_zero():
    # Equal scores everywhere: spread 0 and margin 0, so 0/0 in the tanh term, counted 0.
    rows = [{"id": "tied:7", "subset": "Ties", "scores": [2.0, 2.0, 2.0], "num_correct": 2},
            {"id": "ref:7", "subset": "Ties", "scores": [2.0, 2.0], "num_correct": 1}]
    assert scoring.ties_score(rows) == 0.0


def test_rewardbench2_overall_is_the_mean_of_the_domains():
    rows = [{"id": str(i), "subset": domain, "scores": scores, "num_correct": 1}
            for i, (domain, scores) in enumerate([
                ("Factuality", [1.0, 0.0, 0.0, 0.0]), ("Factuality", [0.0, 1.0, 0.0, 0.0]),
                ("Math", [1.0, 1.0, 0.0, 0.0]), ("Focus", [2.0, 1.0, 1.0, 1.0]),
                ("Precise IF", [1.0, 1.0, 1.0, 0.0]), ("Safety", [0.0, 0.0, 0.0, 0.0])])]
    result = scoring.rewardbench2(rows + _ties_rows())
    expected = {"Factuality": 0.5, "Math": 0.5, "Focus": 1.0, "Precise IF": 1 / 3, "Safety": 0.25,
                "Ties": scoring.ties_score(_ties_rows())}
    assert result["sections"] == pytest.approx(expected)
    assert result["overall"] == pytest.approx(np.mean(list(expected.values())))


def test_weight_search_recovers_a_planted_vector():
    planted = np.array([0.35, 0.75, 0.45, 0.55, -0.40])  # 20 x planted has gcd 1: no other grid point on its ray
    rng = np.random.default_rng(0)
    direction = planted / np.linalg.norm(planted)
    # Attribute differences close to the planted decision boundary pin the direction down.
    differences = rng.normal(size=(200, 5))
    differences -= np.outer(differences @ direction, direction)
    differences += np.outer(rng.uniform(0.02, 0.1, size=200), direction)
    chosen = rng.normal(size=(200, 5))
    result = scoring.search_weights(chosen, chosen - differences)
    assert result["weights"] == pytest.approx(planted.tolist())
    assert result["accuracy"] == 1.0


def test_weight_search_grid_is_the_papers():
    first_four, verbosity = scoring.weight_grid()
    assert len(first_four) * len(verbosity) == 21 ** 5
    assert verbosity.min() == -20 and verbosity.max() == 0 and first_four.max() == 20
