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


def test_filter_detection_by_hand(bench):
    qrels = {"q1": {"p": 3, "a": 1, "b": 2}, "q2": {"p2": 2, "c": 1}}
    candidates = {"q1": ["a", "x", "b", "y"], "q2": ["c", "z"]}
    kept = {"q1": ["x", "b", "y"], "q2": []}
    ge1 = bench.filter_detection(candidates, kept, qrels, 1)
    # relevant a, b, c: a and c removed; others x, y, z: x, y kept
    assert (ge1["judged_relevant"], ge1["relevant_removed"], ge1["not_relevant"], ge1["not_relevant_kept"]) == (
        3, 2, 3, 2)
    assert ge1["relevant_removed_share"] == pytest.approx(2 / 3)
    assert ge1["not_relevant_kept_share"] == pytest.approx(2 / 3)
    assert ge1["kept_relevant_share"] == pytest.approx(1 / 3) and ge1["queries_emptied"] == 1
    ge2 = bench.filter_detection(candidates, kept, qrels, 2)
    assert (ge2["judged_relevant"], ge2["relevant_removed"]) == (1, 0)


def test_filter_sources_on_hand_made_scores(bench):
    from tevatron_tele.mining.filters import TableScorer

    positives = {"q": ["p"]}
    run = {"q": [("p", 0.9), ("r1", 0.95), ("r2", 0.86), ("n1", 0.5), ("n2", 0.3)]}
    qrels = {"q": {"p": 3, "r1": 2, "r2": 1}}
    out = bench.filter_sources({"ann": run}, positives, qrels, TableScorer({"q": dict(run["q"])}), seed=0)["ann"]
    assert out["none"]["grade>=1"]["relevant_removed"] == 0 and out["none"]["grade>=1"]["kept"] == 4
    assert out["ratio 0.95"]["grade>=1"]["relevant_removed"] == 2  # threshold 0.855: r1, r2 go, n1, n2 stay
    assert out["ratio 0.95"]["grade>=1"]["not_relevant_kept_share"] == 1.0
    assert out["margin 0"]["grade>=1"]["relevant_removed"] == 1  # only r1 lies above the positive
    assert out["skip 10"]["grade>=1"]["kept"] == 0 and out["skip 10"]["grade>=1"]["queries_emptied"] == 1
    assert out["ratio 0.95"]["rules"]["max_negative_ratio"] == 2


@pytest.mark.slow
def test_counts_on_the_synthetic_collection(bench, synthetic_dir, tiny_model_dir, tmp_path):
    from tevatron_tele.data.collections import load_collection

    out = tmp_path / "fn.json"
    bench.main(["--data", str(synthetic_dir), "--split", "test", "--model", f"tiny={tiny_model_dir}",
                "--out", str(out), "--cache_dir", str(tmp_path / "cache"), "--no_bm25",
                "--table", str(tmp_path / "t.md"),
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
    # the filter: every setting per dense source, on the same top-200 candidates
    filt = result["models"]["tiny"]["filter"]
    assert set(filt) == {"ann", "lookahead"} and set(filt["ann"]) == set(bench.FILTERS)
    for per_setting in filt.values():
        none = per_setting["none"]["grade>=1"]
        assert none["relevant_removed"] == 0 and none["not_relevant_kept_share"] == 1.0
        for name, counts in per_setting.items():
            c = counts["grade>=1"]
            assert c["candidates"] == none["candidates"] and c["kept"] <= none["kept"], name
        # a smaller ratio removes at least as much
        kept = [per_setting[f"ratio {r}"]["grade>=1"]["kept"] for r in ("0.90", "0.95", "0.98")]
        assert kept == sorted(kept)
    assert "ratio 0.95" in (tmp_path / "t.md").read_text()
