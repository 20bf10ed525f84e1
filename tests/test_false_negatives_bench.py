"""The false-negative count: labelled-positive choice, judged shares by hand, and a run on the synthetic set."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "false_negatives.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("false_negatives_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_sparse_positive_is_a_highest_graded_passage(bench):
    qrels = {"q1": {"a": 1, "b": 3, "c": 3, "d": 2}, "q2": {"e": 1}, "q3": {"f": 0}}
    picks = [bench.sparse_positives(qrels, seed)["q1"][0] for seed in range(20)]
    assert set(picks) == {"b", "c"}  # both top-graded passages get picked, nothing else
    positives = bench.sparse_positives(qrels, 0)
    assert positives["q2"] == ["e"] and "q3" not in positives


def test_judged_and_random_shares_by_hand(bench):
    qrels = {"q1": {"p": 3, "a": 1, "b": 2}, "q2": {"p2": 2, "c": 2}}
    negatives = {"q1": ["a", "b", "x", "y"], "q2": ["z", "c"]}
    ge1 = bench.judged_share(negatives, qrels, 1)
    assert (ge1["negatives"], ge1["judged_relevant"]) == (6, 3)
    assert ge1["pooled_share"] == pytest.approx(0.5)
    assert ge1["mean_per_query_share"] == pytest.approx((2 / 4 + 1 / 2) / 2)
    ge2 = bench.judged_share(negatives, qrels, 2)
    assert ge2["judged_relevant"] == 2 and ge2["mean_per_query_share"] == pytest.approx((1 / 4 + 1 / 2) / 2)
    # 10 passages: q1 has 2 other relevant among 9 candidates, q2 has 1 among 9
    assert bench.random_share(qrels, {"q1": ["p"], "q2": ["p2"]}, 10, 1) == pytest.approx((2 / 9 + 1 / 9) / 2)


@pytest.mark.slow
def test_counts_on_the_synthetic_collection(bench, synthetic_dir, tiny_model_dir, tmp_path):
    from tevatron_tele.data.collections import load_collection

    out = tmp_path / "fn.json"
    bench.main(["--data", str(synthetic_dir), "--split", "test", "--model", f"tiny={tiny_model_dir}",
                "--out", str(out), "--cache_dir", str(tmp_path / "cache"), "--no_bm25",
                "--p_max_len", "32", "--q_max_len", "16"])
    result = json.loads(out.read_text())
    collection = load_collection(synthetic_dir, split="test")
    judged = [q for q in collection.queries if collection.positives(q)]
    assert result["queries"] == len(judged)
    sources = result["models"]["tiny"]["sources"]
    assert set(sources) == {"ann@top200-sample30", "ann@top10", "lookahead@top200-sample30", "lookahead@top10"}
    for counts in sources.values():
        ge1, ge2 = counts["grade>=1"], counts["grade>=2"]
        assert ge1["negatives"] == ge2["negatives"] > 0
        assert ge2["judged_relevant"] <= ge1["judged_relevant"] <= ge1["negatives"]
    # the top ten minus the labelled positive (the runner's rule: cut at depth, then drop positives)
    assert 9 * len(judged) <= sources["ann@top10"]["grade>=1"]["negatives"] <= 10 * len(judged)
    assert sources["lookahead@top10"]["grade>=1"]["negatives"] == 9 * len(judged)  # a passage ranks itself first
    assert 0 <= result["random"]["grade>=1"] < 1
