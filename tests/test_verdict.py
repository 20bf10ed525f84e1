"""Episode selection on dev and the bootstrap verdict, on hand-made figures."""
from __future__ import annotations

import pytest

from tevatron_tele.evaluation.metrics import evaluate_run, per_query_values
from tevatron_tele.evaluation.verdict import (
    compare,
    paired_bootstrap,
    select_episode,
    select_episode_guarded,
    verdict,
)


def test_selection_takes_the_best_dev_episode():
    assert select_episode({0: 0.50, 1: 0.52, 2: 0.55, 3: 0.54}) == 2


def test_selection_ties_go_to_the_earlier_episode():
    assert select_episode({0: 0.50, 1: 0.55, 2: 0.55, 3: 0.55}) == 1


def test_selection_keeps_the_start_unless_beaten():
    assert select_episode({0: 0.50, 1: 0.49, 2: 0.50}) == 0
    with pytest.raises(ValueError, match="episode 0"):
        select_episode({1: 0.5})


def test_bootstrap_interval_of_a_clear_gain_and_of_noise():
    gain = paired_bootstrap([0.1] * 50 + [0.0] * 50)
    assert gain["mean"] == pytest.approx(0.05) and gain["ci95"][0] > 0.02 and gain["ci95"][1] < 0.08
    noise = paired_bootstrap([0.1, -0.1] * 50)
    assert noise["mean"] == pytest.approx(0.0) and noise["ci95"][0] < 0 < noise["ci95"][1]
    assert paired_bootstrap([0.1, -0.1] * 50, seed=3) == paired_bootstrap([0.1, -0.1] * 50, seed=3)


def _values(gains, base=0.3):
    return {f"q{i}": base + g for i, g in enumerate(gains)}


def test_guarded_choice_keeps_the_start_for_a_noise_level_gain():
    """Episode 1 is higher on dev on average (+0.005) but within noise: the start is kept, and the verdict says
    that no episode beats it beyond noise, naming the best one and its interval."""
    start = _values([0.0] * 100)
    noisy = _values([0.2, -0.19] * 50)
    selected, tests = select_episode_guarded({0: start, 1: noisy})
    assert selected == 0 and tests[1]["against"] == 0 and not tests[1]["replaced"]
    assert tests[1]["ci95"][0] < 0 < tests[1]["ci95"][1] and tests[1]["mean"] == pytest.approx(0.005)
    assert select_episode({0: 0.3, 1: 0.305}) == 1  # the plain best-on-dev rule would have taken it
    dev = {0: 0.3, 1: 0.305}
    result = verdict(selected, dev, {0: start}, selection={"rule": "guarded", "tests": tests})
    assert result["text"].startswith("no episode beats the start beyond noise on the dev split (best: episode 1, "
                                     "nDCG@10 0.3050 against 0.3000 at the start, +0.005 [")
    assert result["selection"]["rule"] == "guarded" and result["selection"]["tests"][1]["replaced"] is False


def test_guarded_choice_takes_a_clear_gain_and_later_only_beyond_noise():
    """Episode 1 gains +0.05 on every other query (clear); episode 2 adds a noise-level +0.001 over it and is not
    taken; episode 3 is clearly above episode 1 and replaces it."""
    start = _values([0.0] * 100)
    ep1 = _values([0.1, 0.0] * 50)
    ep2 = _values([0.1 + 0.05, 0.0 - 0.048] * 50)
    ep3 = _values([0.2, 0.1] * 50)
    selected, tests = select_episode_guarded({0: start, 1: ep1, 2: ep2, 3: ep3})
    assert selected == 3
    assert tests[1] | {"against": 0, "replaced": True} == tests[1] and tests[1]["ci95"][0] > 0
    assert tests[2]["against"] == 1 and not tests[2]["replaced"]
    assert tests[3]["against"] == 1 and tests[3]["replaced"]
    selected12, _ = select_episode_guarded({0: start, 1: ep1, 2: ep2})
    assert selected12 == 1
    dev = {0: 0.3, 1: 0.35, 2: 0.351}
    text = verdict(1, dev, {0: start, 1: ep1}, selection={"rule": "guarded", "tests": _})["text"]
    assert text.startswith("episode 1 (best on dev beyond noise, nDCG@10 0.3500 against 0.3000 at the start, +0.050 [")
    assert "over episode 0) beats the start by +0.050" in text
    with pytest.raises(ValueError, match="episode 0"):
        select_episode_guarded({1: ep1})


def test_compare_pairs_by_query():
    a = {"q1": 1.0, "q2": 0.5, "q3": 0.0}
    b = {"q3": 0.0, "q2": 0.5, "q1": 0.0, "q9": 1.0}  # q9 has no pair: left out
    result = compare(a, b)
    assert result["queries"] == 3 and result["mean"] == pytest.approx(1 / 3)


def test_verdict_sentences():
    start = {f"q{i}": 0.4 for i in range(40)}
    better = {f"q{i}": 0.4 + (0.2 if i % 2 else 0.0) for i in range(40)}
    bm25 = {f"q{i}": 0.8 for i in range(40)}
    kept = verdict(2, {0: 0.4, 1: 0.45, 2: 0.5}, {0: start, 2: better}, {"BM25": bm25})
    assert kept["selected"] == 2 and kept["vs"]["start"]["mean"] == pytest.approx(0.1)
    assert kept["text"].startswith("episode 2 (best on dev") and "beats the start by +0.100" in kept["text"]
    assert "loses to BM25 by -0.300" in kept["text"]
    nothing = verdict(0, {0: 0.5, 1: 0.4}, {0: start}, {"BM25": bm25})
    assert "no episode beats the start" in nothing["text"] and "the start model loses to BM25" in nothing["text"]
    assert "start" not in nothing["vs"]


def test_per_query_values_average_to_the_reported_mean():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 1}, "q3": {"d9": 1}, "q4": {"d1": 0}}
    run = {"q1": [("d1", 3.0), ("d2", 1.0)], "q2": [("d3", 2.0), ("d5", 1.5), ("d2", 1.0)]}
    for measure in ("nDCG@10", "MRR@10", "R@100"):
        values = per_query_values(run, qrels, measure)
        assert set(values) == {"q1", "q2", "q3"} and values["q3"] == 0.0
        assert sum(values.values()) / 3 == pytest.approx(evaluate_run(run, qrels, [measure])[measure])


def test_runs_compared_by_their_kept_episodes(tmp_path):
    from tevatron_tele.evaluation.report import verdict_lines
    from tevatron_tele.evaluation.verdict import compare_runs
    from tevatron_tele.utils import write_json

    qids = [f"q{i}" for i in range(30)]
    for name, value, selected in (("tele", 0.6, 2), ("ance", 0.5, 1)):
        (tmp_path / name).mkdir()
        write_json(tmp_path / name / "best.json", {
            "selected": selected, "metric": "nDCG@10", "text": f"{name} text", "test_mean": {str(selected): value},
            "per_query": {"selected": dict.fromkeys(qids, value), "start": dict.fromkeys(qids, 0.4),
                          "BM25": dict.fromkeys(qids, 0.55)}})
    (tmp_path / "unjudged").mkdir()
    result = compare_runs([tmp_path / "tele", tmp_path / "ance", tmp_path / "unjudged"])
    assert set(result["runs"]) == {"tele", "ance"} and result["runs"]["tele"]["selected"] == 2
    (pair,) = result["pairs"]
    assert (pair["a"], pair["b"]) == ("tele", "ance") and pair["mean"] == pytest.approx(0.1)
    assert result["baselines"] == {"BM25": pytest.approx(0.55)}
    lines = verdict_lines(result)
    assert lines[0] == "## Verdict" and "- **tele**: tele text" in lines and any("| tele | ance | +0.100" in x
                                                                                  for x in lines)
    assert compare_runs([tmp_path / "unjudged"]) is None
