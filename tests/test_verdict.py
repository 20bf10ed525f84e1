"""Episode selection on dev and the bootstrap verdict, on hand-made figures."""
from __future__ import annotations

import pytest

from tevatron_tele.evaluation.metrics import evaluate_run, per_query_values
from tevatron_tele.evaluation.verdict import compare, paired_bootstrap, select_episode, verdict


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
    from tevatron_tele.runner.selection import compare_runs
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
