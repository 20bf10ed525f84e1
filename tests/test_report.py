"""Run summaries and the side-by-side report (markdown, JSON, PNG) from hand-built inputs."""
from __future__ import annotations

import json

import pytest

from tevatron_tele.evaluation.analysis import build_probe, sample_queries, summarize_run
from tevatron_tele.evaluation.report import markdown_report, metric_names, write_report

POSITIVES = {"q1": ["p1"], "q2": ["p2"]}
TABLES = {
    1: {"q1": {"p1": 1.0, "a": 0.5, "b": 2.0, "c": 0.9}, "q2": {"p2": 1.0, "x": 0.0, "y": 0.5}},
    2: {"q1": {"p1": 1.0, "a": 1.5, "b": 0.1, "c": 0.2}, "q2": {"p2": 1.0, "x": 0.2, "y": 2.0}},
}
RANKINGS = {
    0: {"q1": [("b", 3.0), ("p1", 2.0), ("a", 1.0)], "q2": [("y", 2.0), ("p2", 1.0), ("x", 0.5)]},
    1: {"q1": [("a", 3.0), ("b", 2.0), ("p1", 1.0)], "q2": [("x", 2.0), ("p2", 1.0), ("y", 0.5)]},
}
EVALS = {0: {"nDCG@10": 0.40, "R@100": 0.8}, 1: {"nDCG@10": 0.50, "R@100": 0.85}, 2: {"nDCG@10": 0.52, "R@100": 0.9}}


def _run(name, pools, sources):
    probe = build_probe(RANKINGS[0], POSITIVES, k=3)
    return summarize_run(name, [0, 1, 2], TABLES, POSITIVES, pools, sources, probe, RANKINGS, EVALS, overlap_k=3)


def _analysis():
    fixed = {"q1": ["a", "b", "c"], "q2": ["x", "y"]}
    static = _run("static", {1: fixed, 2: fixed}, {1: {q: {"ann": d} for q, d in fixed.items()},
                                                  2: {q: {"ann": d, "momentum": d} for q, d in fixed.items()}})
    moving_pools = {1: {"q1": ["a", "c"], "q2": ["x"]}, 2: {"q1": ["b"], "q2": ["y"]}}
    moving = _run("moving", moving_pools, {i: {q: {"ann": d, "lookahead": d[:1]} for q, d in p.items()}
                                           for i, p in moving_pools.items()})
    return {"probe": {"queries": 2, "pairs": 4, "k": 3, "from": "static"}, "runs": [static, moving]}


def test_probe_is_base_top_k_minus_positives():
    assert build_probe(RANKINGS[0], POSITIVES, k=2) == {"q1": ["b"], "q2": ["y"]}
    assert build_probe(RANKINGS[0], POSITIVES, k=3, queries=["q2"]) == {"q2": ["y", "x"]}


def test_query_sample_is_deterministic_and_order_free():
    qids = [f"q{i}" for i in range(50)]
    assert sample_queries(qids, 10) == sample_queries(list(reversed(qids)), 10)
    assert len(sample_queries(qids, 10)) == 10 and sample_queries(qids, None) == sorted(qids)


def test_summary_of_a_run():
    static = _analysis()["runs"][0]
    # learned in 1: q1/a, q1/c, q2/x, q2/y; at 2, q1/a (1.5) and q2/y (2.0) are above the positive again
    assert static["forgetting"]["own_pool"]["rates"] == [
        {"episode": 2, "learned_before": 4, "forgotten": 2, "rate": 0.5}]
    # probe {q1: [b, a], q2: [y, x]}: learned in 1 = q1/a, q2/x, q2/y -> at 2: q1/a, q2/y forgotten
    assert static["forgetting"]["probe"]["rates"][0]["rate"] == pytest.approx(2 / 3)
    assert static["probe"]["above_positive"] == [{"episode": 1, "above_positive": 1, "fraction": 0.25},
                                                  {"episode": 2, "above_positive": 2, "fraction": 0.5}]
    # unchanged pools: no overlap change; ANN top-3 of 0 vs 1: q1 {b,a} vs {a,b}, q2 {y,x} vs {x,y}
    assert [r["change"] for r in static["pool_overlap"]] == [0.0]
    assert static["ann_overlap"][0]["jaccard"] == 1.0
    assert static["sources"]["2"]["sources"]["momentum"]["per_query"] == 2.5
    assert static["convergence"]["best"]["nDCG@10"]["first_within_tol"] == 2


def test_markdown_has_a_row_per_run_and_episode():
    analysis = _analysis()
    assert metric_names(analysis["runs"]) == ["nDCG@10", "R@100"]
    md = markdown_report(analysis)
    summary, per_episode = md.split("## Per episode")
    assert [line.split("|")[1].strip() for line in summary.splitlines() if line.startswith("| ") and
            not line.startswith("| run")] == ["static", "moving"]
    rows = [line for line in per_episode.splitlines() if line.startswith("| ") and not line.startswith("| run")]
    assert len(rows) == 6
    assert "| static | 2 | 0.520 | 0.900 | 0.500 | 0.667 |" in per_episode
    assert "lookahead per query" in per_episode and "momentum per query" in per_episode


def test_write_report_files(tmp_path):
    paths = write_report(_analysis(), tmp_path / "report")
    assert json.loads(paths["json"].read_text())["runs"][1]["name"] == "moving"
    assert "| moving |" in paths["markdown"].read_text()
    for key in ("forgetting_png", "metrics_png", "overlap_png", "composition_png"):
        data = paths[key].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, key
