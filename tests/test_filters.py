"""Positive-aware filtering and forgotten-negative replay: the rules on hand-made scores, through the hooks and
`mine_episode` (lookahead judged by S(q, d), pool.stats counts, replay from a stored score table), the scorers,
the driver's flags, the runner's settings, and (slow) the runner end to end with a filter."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from tevatron_tele.data.pools import PoolEntry, pool_stats_path, read_pool, write_pool
from tevatron_tele.mining.filters import (
    EmbeddingScorer,
    FilterSettings,
    PositiveAwareFilter,
    TableScorer,
    filter_candidates,
    ratio_threshold,
    replay_momentum,
    weakest_positive_score,
)
from tevatron_tele.mining.tele import MiningConfig, ann_negatives, lookahead_negatives, mine_episode
from tevatron_tele.retrieval.embeddings import save_embeddings
from tevatron_tele.retrieval.scoring import save_score_table, score_pairs_from_embeddings
from tevatron_tele.utils import read_json

CANDIDATES = ["a", "b", "c", "d", "e"]


def _keep(scores, positive, **settings):
    return filter_candidates(CANDIDATES, scores, positive, FilterSettings(**settings))


# ---------------------------------------------------------------- the three rules on hand-made scores

def test_ratio_rule_positive_scores():
    scores = {"a": 0.99, "b": 0.95, "c": 0.90, "d": 0.5, "e": -0.2}
    kept, counts = _keep(scores, 1.0, max_negative_ratio=0.95)
    assert kept == ["b", "c", "d", "e"]  # drop S > 0.95 * 1.0: "b" sits on the threshold and stays
    assert counts["max_negative_ratio"] == counts["removed"] == 1 and counts["kept"] == 4
    assert _keep(scores, 1.0, max_negative_ratio=0.9)[0] == ["c", "d", "e"]
    assert ratio_threshold(2.0, 0.9) == pytest.approx(1.8)  # R * s+ when s+ > 0


def test_ratio_rule_is_sign_safe_for_negative_positive_scores():
    """s+ = -1: R * s+ = -0.9 would lie above the positive; the rule's threshold is s+ - (1-R)|s+| = -1.1."""
    assert ratio_threshold(-1.0, 0.9) == pytest.approx(-1.1)
    scores = {"a": -0.5, "b": -0.95, "c": -1.05, "d": -1.2, "e": -3.0}
    kept, counts = _keep(scores, -1.0, max_negative_ratio=0.9)
    assert kept == ["d", "e"] and counts["max_negative_ratio"] == 3
    # monotone in R whatever the sign: a smaller R never keeps more
    for positive in (-2.0, -0.3, 0.0, 0.4, 3.0):
        for score in np.linspace(-5, 5, 41):
            kept_at = [bool(filter_candidates(["x"], {"x": float(score)}, positive,
                                              FilterSettings(max_negative_ratio=r))[0])
                       for r in (0.5, 0.9, 0.95, 0.98, 1.0, 1.1)]
            assert kept_at == sorted(kept_at), (positive, score, kept_at)
    # R = 1: drop anything above the positive; s+ = 0: threshold 0 for every R
    assert _keep(scores, -1.0, max_negative_ratio=1.0)[0] == ["c", "d", "e"]
    assert _keep({"a": 0.1, "b": 0.0, "c": -0.1, "d": 1, "e": -1}, 0.0, max_negative_ratio=0.5)[0] == ["b", "c", "e"]


def test_margin_rule_and_both_rules_counted_independently():
    scores = {"a": 0.9, "b": 0.75, "c": 0.6, "d": 0.2, "e": -0.5}
    kept, counts = _keep(scores, 0.8, negative_margin=0.1)
    assert kept == ["c", "d", "e"] and counts["negative_margin"] == 2  # drop S > 0.7
    assert _keep(scores, 0.8, negative_margin=0.0)[0] == ["b", "c", "d", "e"]  # margin 0: above the positive
    assert _keep(scores, -0.2, negative_margin=0.2)[0] == ["e"]  # drop S > -0.4, negative scores alike
    # ratio 0.95 -> threshold 0.76 drops a; margin 0.1 -> 0.7 drops a, b: a counts under both, once in removed
    kept, counts = _keep(scores, 0.8, max_negative_ratio=0.95, negative_margin=0.1)
    assert kept == ["c", "d", "e"]
    assert (counts["max_negative_ratio"], counts["negative_margin"], counts["removed"]) == (1, 2, 2)


def test_skip_top_and_unscored_candidates():
    kept, counts = _keep({}, None, skip_top=2)
    assert kept == ["c", "d", "e"] and counts["skip_top"] == 2 and counts["removed"] == 2
    # skip first, then the score rules on the rest; no score: kept and counted
    scores = {"a": 0.1, "c": 0.99, "d": 0.1, "e": 0.1}
    kept, counts = _keep(scores, 1.0, skip_top=1, max_negative_ratio=0.9)
    assert kept == ["b", "d", "e"] and counts["unscored"] == 1 and counts["max_negative_ratio"] == 1
    kept, counts = _keep(scores, None, max_negative_ratio=0.9)  # no positive score: nothing to compare with
    assert kept == CANDIDATES and counts["unscored"] == 5
    # momentum is not a ranking: skip_top does not apply, repeats are kept and counted
    kept, counts = filter_candidates(["a", "a", "b"], {"a": 0.99, "b": 0.1}, 1.0,
                                     FilterSettings(max_negative_ratio=0.9, skip_top=5), ranked=False)
    assert kept == ["b"] and counts["max_negative_ratio"] == 2 and counts["skip_top"] == 0


def test_weakest_positive_and_settings_checks():
    assert weakest_positive_score({"p1": 0.9, "p2": 0.4, "x": 0.1}, ["p1", "p2", "p3"]) == 0.4
    assert weakest_positive_score({"x": 0.1}, ["p1"]) is None
    for bad in (dict(max_negative_ratio=0), dict(max_negative_ratio=-0.5), dict(skip_top=-1),
                dict(negative_margin=float("nan"))):
        with pytest.raises(ValueError):
            FilterSettings(**bad)
    assert not FilterSettings().active and FilterSettings(skip_top=1).active
    assert not FilterSettings(skip_top=1).needs_scores and FilterSettings(negative_margin=0).needs_scores
    with pytest.raises(ValueError, match="need the mining model's scores"):
        PositiveAwareFilter(FilterSettings(max_negative_ratio=0.9), {})


def test_several_positives_judge_by_the_weakest():
    """q has positives p1 (0.9) and p2 (0.5): with R = 0.9 the threshold is 0.45, from p2."""
    run = {"q": [("p1", 0.9), ("x", 0.8), ("y", 0.46), ("p2", 0.5), ("z", 0.44), ("w", 0.1)]}
    table = {"q": {"p1": 0.9, "p2": 0.5, "x": 0.8, "y": 0.46, "z": 0.44, "w": 0.1}}
    filt = PositiveAwareFilter(FilterSettings(max_negative_ratio=0.9), {"q": ["p1", "p2"]}, TableScorer(table))
    got = ann_negatives(run, {"q": ["p1", "p2"]}, depth=10, sample=None, keep=filt.keeper("ann"))
    assert got == {"q": ["z", "w"]}
    assert filt.stats()["sources"]["ann"]["max_negative_ratio"] == 2


def test_filter_positive_best_judges_by_the_best_positive():
    """The same query with --filter_positive best: the threshold is 0.9 * 0.9 = 0.81, from p1, so only x goes."""
    run = {"q": [("p1", 0.9), ("x", 0.85), ("y", 0.46), ("p2", 0.5), ("z", 0.44), ("w", 0.1)]}
    table = {"q": {"p1": 0.9, "p2": 0.5, "x": 0.85, "y": 0.46, "z": 0.44, "w": 0.1}}
    settings = FilterSettings(max_negative_ratio=0.9, positive="best")
    filt = PositiveAwareFilter(settings, {"q": ["p1", "p2"]}, TableScorer(table))
    got = ann_negatives(run, {"q": ["p1", "p2"]}, depth=10, sample=None, keep=filt.keeper("ann"))
    assert got == {"q": ["y", "z", "w"]}
    assert "best positive" in filt.stats()["rule"] and filt.stats()["filter_positive"] == "best"
    assert "filter_positive" not in FilterSettings(max_negative_ratio=0.9).to_dict()  # old stats unchanged
    with pytest.raises(ValueError, match="--filter_positive must be one of weakest, best"):
        FilterSettings(max_negative_ratio=0.9, positive="first")


# ---------------------------------------------------------------- through mine_episode

def _collection(positives):
    return SimpleNamespace(queries={q: q for q in positives}, answers=None, positives=lambda q: positives.get(q, []))


def test_lookahead_candidates_are_judged_by_the_query_score(tmp_path):
    """The positive-run scores say x is the positive's closest neighbour; the query scores x low and y high: the
    filter drops y, not x."""
    positives = {"q": ["p"]}
    positive_run = {"p": [("p", 1.0), ("x", 0.99), ("y", 0.2), ("z", 0.1)]}
    table = {"q": {"p": 0.8, "x": 0.1, "y": 0.79, "z": 0.3}}
    config = MiningConfig(depth=10, sample=None, max_negative_ratio=0.95)
    pool = mine_episode(_collection(positives), tmp_path / "pool.jsonl", positive_run=positive_run, config=config,
                        scores=table)
    (entry,) = read_pool(pool)
    assert entry.sources["lookahead"] == ["x", "z"]
    assert lookahead_negatives(positive_run, positives, depth=10, sample=None) == {"q": ["x", "y", "z"]}
    stats = read_json(pool_stats_path(pool))
    counts = stats["positive_aware_filter"]["sources"]["lookahead"]
    assert (counts["candidates"], counts["max_negative_ratio"], counts["removed"], counts["kept"]) == (3, 1, 1, 2)
    assert stats["config"]["max_negative_ratio"] == 0.95


def test_train_positives_best_keeps_the_best_scored_positive(tmp_path):
    """q1 has three positives; the mining model scores p2 highest: its entry trains on p2 alone, and p1 / p3 stay out
    of the negatives. q2's positives have no score: it keeps them all. Without a scorer it is refused."""
    positives = {"q1": ["p1", "p2", "p3"], "q2": ["r1", "r2"]}
    run = {"q1": [("p1", 0.9), ("x", 0.8), ("p2", 0.7), ("y", 0.6), ("p3", 0.5)], "q2": [("r1", 0.9), ("z", 0.8)]}
    table = {"q1": {"p1": 0.5, "p2": 0.9, "p3": 0.1, "x": 0.3, "y": 0.2}}
    config = MiningConfig(depth=10, sample=None, train_positives="best")
    pool = mine_episode(_collection(positives), tmp_path / "pool.jsonl", query_run=run, config=config, scores=table)
    entries = {e.query_id: e for e in read_pool(pool)}
    assert entries["q1"].positive_document_ids == ["p2"] and entries["q1"].negative_document_ids == ["x", "y"]
    assert entries["q2"].positive_document_ids == ["r1", "r2"] and entries["q2"].negative_document_ids == ["z"]
    assert read_json(pool_stats_path(pool))["config"]["train_positives"] == "best"
    with pytest.raises(ValueError, match="need the mining model's scores"):
        mine_episode(_collection(positives), tmp_path / "other.jsonl", query_run=run, config=config)
    with pytest.raises(ValueError, match="--train_positives must be one of all, best"):
        MiningConfig(train_positives="first")


def test_pool_stats_count_each_rule_per_source_and_filter_before_sampling(tmp_path):
    positives = {"q1": ["p1"], "q2": ["p2"]}
    query_run = {"q1": [("p1", 0.9), ("a", 0.95), ("b", 0.88), ("c", 0.5), ("d", 0.4), ("e", 0.3)],
                 "q2": [("f", 0.7), ("p2", 0.6), ("g", 0.59), ("h", 0.1)]}
    bm25_run = {"q1": [("c", 12.0), ("a", 11.0), ("e", 3.0)], "q2": [("h", 9.0), ("g", 8.0)]}
    table = {q: dict(r) for q, r in query_run.items()}
    previous = [PoolEntry("q1", "q1", ["p1"], ["a", "b", "e", "e"], {"ann": ["a", "b", "e", "e"]}),
                PoolEntry("q2", "q2", ["p2"], ["f", "h"], {"ann": ["f", "h"]})]
    write_pool(tmp_path / "prev.jsonl", previous, {})
    config = MiningConfig(depth=10, sample=2, seed=3, max_negative_ratio=0.95, negative_margin=0.05, skip_top=1)
    pool = mine_episode(_collection(positives), tmp_path / "pool.jsonl", query_run=query_run, bm25_run=bm25_run,
                        previous_pool=tmp_path / "prev.jsonl", config=config, scores=TableScorer(table))
    by_q = {e.query_id: e for e in read_pool(pool)}
    # q1 ann: skip a (top candidate); b 0.88 > 0.9 - 0.05 = 0.85 -> margin; ratio threshold 0.855 -> ratio too
    # -> c, d, e remain, and the sample of 2 is drawn from them
    assert len(by_q["q1"].sources["ann"]) == 2 and set(by_q["q1"].sources["ann"]) <= {"c", "d", "e"}
    # q2 ann: skip f; g 0.59 > 0.57 (ratio) and > 0.55 (margin); h stays
    assert by_q["q2"].sources["ann"] == ["h"]
    # BM25: skip each ranking's top (c, h); the rest is judged by the dense S(q, d): a (0.95) and g (0.59) go
    assert by_q["q1"].sources["bm25"] == ["e"] and by_q["q2"].sources["bm25"] == []
    stats = read_json(pool_stats_path(pool))["positive_aware_filter"]["sources"]
    assert (stats["bm25"]["skip_top"], stats["bm25"]["max_negative_ratio"], stats["bm25"]["kept"]) == (2, 2, 1)
    assert stats["ann"] == {"queries": 2, "candidates": 8, "kept": 4, "removed": 4, "skip_top": 2,
                            "max_negative_ratio": 2, "negative_margin": 2, "unscored": 0,
                            "queries_without_positive_score": 0}
    assert stats["momentum"]["skip_top"] == 0 and stats["momentum"]["candidates"] == 6
    # momentum q1: a (0.95) goes by both rules, b (0.88) by both; e, e stay; q2: f (0.7 > 0.6) goes
    assert by_q["q1"].sources["momentum"] == ["e", "e"] and by_q["q2"].sources["momentum"] == ["h"]
    assert stats["momentum"]["removed"] == 3


def test_bm25_candidates_judged_by_dense_scores(tmp_path):
    positives = {"q": ["p"]}
    bm25_run = {"q": [("a", 20.0), ("b", 15.0), ("c", 10.0)]}
    table = {"q": {"p": 0.5, "a": 0.1, "b": 0.7, "c": 0.2}}
    pool = mine_episode(_collection(positives), tmp_path / "pool.jsonl", bm25_run=bm25_run,
                        config=MiningConfig(depth=10, sample=None, negative_margin=0.0), scores=table)
    assert read_pool(pool)[0].sources["bm25"] == ["a", "c"]


def test_no_option_leaves_the_pool_byte_identical(tmp_path):
    positives = {"q1": ["p1"], "q2": ["p2"]}
    query_run = {"q1": [(f"d{i}", 1.0 - i / 100) for i in range(40)], "q2": [(f"e{i}", 0.5) for i in range(40)]}
    plain = mine_episode(_collection(positives), tmp_path / "a.jsonl", query_run=query_run,
                         config=MiningConfig(depth=30, sample=5, seed=1))
    with_scores = mine_episode(_collection(positives), tmp_path / "b.jsonl", query_run=query_run,
                               config=MiningConfig(depth=30, sample=5, seed=1), scores={"q1": {"d0": 9.0}})
    assert plain.read_bytes() == with_scores.read_bytes()
    assert pool_stats_path(plain).read_bytes() == pool_stats_path(with_scores).read_bytes()
    assert "positive_aware_filter" not in read_json(pool_stats_path(plain))
    with pytest.raises(ValueError, match="need the mining model's scores"):
        mine_episode(_collection(positives), tmp_path / "c.jsonl", query_run=query_run,
                     config=MiningConfig(max_negative_ratio=0.9))
    with pytest.raises(ValueError, match="--momentum"):
        MiningConfig(momentum="forgotten")


# ---------------------------------------------------------------- replay of forgotten negatives

def test_replay_ordering_by_hand():
    negatives = ["a", "b", "c", "b", "d"]
    scores = {"a": 0.2, "b": 0.9, "c": 0.1, "d": 0.7}
    assert replay_momentum(negatives, scores, 0.6, "all") == negatives
    assert replay_momentum(negatives, scores, 0.6, "forgotten-only") == ["b", "b", "d"]
    assert replay_momentum(negatives, scores, 0.6, "forgotten-first") == ["b", "d", *negatives]
    assert replay_momentum(negatives, scores, None, "forgotten-first") == negatives  # no positive score
    assert replay_momentum(negatives, {}, 0.6, "forgotten-only") == []


def test_replay_from_stored_scores(tmp_path):
    """Momentum of pool 2 from pool 1 and a stored scores.npz of model 1 (pools' negatives and positives)."""
    positives = {"q1": ["p1", "p9"], "q2": ["p2"]}
    pool1 = [PoolEntry("q1", "q1", ["p1", "p9"], ["a", "b", "c", "a"], {"ann": ["a", "b", "c", "a"]}),
             PoolEntry("q2", "q2", ["p2"], ["x", "y", "z"], {"ann": ["x", "y", "z"]})]
    write_pool(tmp_path / "pool1.jsonl", pool1, {})
    # q1: weakest positive p9 = 0.3 -> a (0.35) and c (0.8) are forgotten, b (0.2) is not; q2: z only
    save_score_table(tmp_path / "scores.npz", {"q1": {"p1": 0.9, "p9": 0.3, "a": 0.35, "b": 0.2, "c": 0.8},
                                               "q2": {"p2": 0.5, "x": 0.1, "y": 0.5, "z": 0.51}})
    pools = {}
    for mode in ("all", "forgotten-first", "forgotten-only"):
        out = mine_episode(_collection(positives), tmp_path / f"{mode}.jsonl", previous_pool=tmp_path / "pool1.jsonl",
                           config=MiningConfig(momentum=mode),
                           scores=tmp_path / "scores.npz" if mode != "all" else None)
        pools[mode] = {e.query_id: e.sources["momentum"] for e in read_pool(out)}
    assert pools["all"] == {"q1": ["a", "b", "c", "a"], "q2": ["x", "y", "z"]}
    assert pools["forgotten-first"] == {"q1": ["a", "c", "a", "b", "c", "a"], "q2": ["z", "x", "y", "z"]}
    assert pools["forgotten-only"] == {"q1": ["a", "c", "a"], "q2": ["z"]}
    replay = read_json(pool_stats_path(tmp_path / "forgotten-only.jsonl"))["momentum_replay"]
    assert (replay["mode"], replay["negatives"], replay["forgotten"], replay["queries_with_forgotten"]) == (
        "forgotten-only", 7, 4, 2)
    assert replay["listed"] == 4 and replay["unscored"] == 0
    # without a previous pool there is nothing to replay, and no scores are asked for
    mine_episode(_collection(positives), tmp_path / "first.jsonl", query_run={"q2": [("x", 1.0)]},
                 config=MiningConfig(momentum="forgotten-first"))
    with pytest.raises(ValueError, match="need the mining model's scores"):
        mine_episode(_collection(positives), tmp_path / "none.jsonl", previous_pool=tmp_path / "pool1.jsonl",
                     config=MiningConfig(momentum="forgotten-only"))


# ---------------------------------------------------------------- scorers and the driver

def _embeddings(tmp_path, shards=1):
    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(30)]
    corpus = rng.normal(size=(30, 8)).astype(np.float16)
    queries = rng.normal(size=(4, 8)).astype(np.float16)
    qids = [f"q{i}" for i in range(4)]
    if shards == 1:
        save_embeddings(tmp_path / "corpus", corpus, docs)
    else:
        for s, rows in enumerate(np.array_split(np.arange(30), shards)):
            save_embeddings(tmp_path / f"corpus.shard-{s:03d}-of-{shards:03d}", corpus[rows], [docs[r] for r in rows])
    save_embeddings(tmp_path / "queries", queries, qids)
    return tmp_path / "queries", tmp_path / "corpus", queries, corpus, qids, docs


@pytest.mark.parametrize("shards", [1, 3])
def test_embedding_scorer_equals_the_stored_scores(tmp_path, shards):
    qp, cp, queries, corpus, qids, docs = _embeddings(tmp_path, shards)
    pairs = {"q0": ["d3", "d29", "d0", "missing"], "q2": ["d11", "d12", "d3"], "nobody": ["d1"]}
    table = score_pairs_from_embeddings(qp, cp, pairs)
    scorer = EmbeddingScorer(qp, cp)
    for q, ds in pairs.items():
        assert scorer.scores(q, ds) == table.get(q, {})
    expected = float(corpus[3].astype(np.float32) @ queries[0].astype(np.float32))
    assert scorer.scores("q0", ["d3"])["d3"] == pytest.approx(expected, rel=1e-6)


def test_mine_driver_flags(tmp_path, synthetic_dir):
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.data.trec import write_run
    from tevatron_tele.driver.mine import main

    collection = load_collection(synthetic_dir, "train")
    qids = sorted(q for q in collection.queries if collection.positives(q))[:5]
    docs = list(collection.corpus.ids)
    rng = np.random.default_rng(1)
    corpus = rng.normal(size=(len(docs), 8)).astype(np.float32)
    queries = rng.normal(size=(len(qids), 8)).astype(np.float32)
    save_embeddings(tmp_path / "corpus", corpus, docs)
    save_embeddings(tmp_path / "queries", queries, qids)
    scores = queries @ corpus.T
    run = {q: sorted(zip(docs, scores[k].tolist()), key=lambda t: -t[1])[:20] for k, q in enumerate(qids)}
    write_run(tmp_path / "queries.trec", run)
    out = tmp_path / "pool.jsonl"
    main(["--collection", str(synthetic_dir), "--output", str(out), "--query_run", str(tmp_path / "queries.trec"),
          "--sample", "0", "--depth", "20", "--max_negative_ratio", "0.9", "--skip_top", "2",
          "--query_embeddings", str(tmp_path / "queries"), "--corpus_embeddings", str(tmp_path / "corpus")])
    row = {d: i for i, d in enumerate(docs)}
    for e in read_pool(out):
        k = qids.index(e.query_id)
        weakest = min(scores[k][row[p]] for p in e.positive_document_ids)
        threshold = ratio_threshold(float(weakest), 0.9)
        candidates = [d for d, _ in run[e.query_id] if d not in e.positive_document_ids]
        assert e.sources["ann"] == [d for d in candidates[2:] if scores[k][row[d]] <= threshold]
    stats = json.loads(pool_stats_path(out).read_text())["positive_aware_filter"]
    assert stats["skip_top"] == 2 and stats["sources"]["ann"]["skip_top"] == 2 * len(qids)
    # --filter_positive best: each candidate is compared with the best-scored positive instead
    best_out = tmp_path / "pool-best.jsonl"
    main(["--collection", str(synthetic_dir), "--output", str(best_out), "--query_run", str(tmp_path / "queries.trec"),
          "--sample", "0", "--depth", "20", "--max_negative_ratio", "0.9", "--filter_positive", "best",
          "--query_embeddings", str(tmp_path / "queries"), "--corpus_embeddings", str(tmp_path / "corpus")])
    for e in read_pool(best_out):
        k = qids.index(e.query_id)
        threshold = ratio_threshold(float(max(scores[k][row[p]] for p in e.positive_document_ids)), 0.9)
        candidates = [d for d, _ in run[e.query_id] if d not in e.positive_document_ids]
        assert e.sources["ann"] == [d for d in candidates if scores[k][row[d]] <= threshold]
    with pytest.raises(ValueError, match="go together"):
        main(["--collection", str(synthetic_dir), "--output", str(tmp_path / "x.jsonl"), "--query_run",
              str(tmp_path / "queries.trec"), "--query_embeddings", str(tmp_path / "queries")])


def test_runner_settings_are_checked(tmp_path):
    from tevatron_tele.runner.config import EpisodeArguments

    base = dict(output_dir=str(tmp_path), model_name_or_path="m", collection="c")
    assert EpisodeArguments(**base, max_negative_ratio=0.95, momentum="forgotten-first").skip_top == 0
    with pytest.raises(ValueError, match="--momentum must be"):
        EpisodeArguments(**base, momentum="forgotten")
    with pytest.raises(ValueError, match="needs the momentum source"):
        EpisodeArguments(**base, negatives="ann", momentum="forgotten-only")
    with pytest.raises(ValueError, match="max_negative_ratio"):
        EpisodeArguments(**base, max_negative_ratio=0.0)
    with pytest.raises(ValueError, match="--filter_positive must be"):
        EpisodeArguments(**base, max_negative_ratio=0.95, filter_positive="strongest")
    with pytest.raises(ValueError, match="--train_positives must be"):
        EpisodeArguments(**base, train_positives="first")


# ---------------------------------------------------------------- the runner end to end

@pytest.mark.slow
def test_runner_with_filter_and_replay(synthetic_dir, tiny_model_dir, tmp_path, monkeypatch):
    """Two short episodes with --max_negative_ratio, --skip_top and --momentum forgotten-first: every pool's
    negatives obey the rule under the scores of the model that mined them (pool i+1 is mined before episode
    i's corpus embeddings are removed, so no corpus is encoded twice), replay follows scores.npz, and a run whose
    episode 0 comes from --base_cache_dir (no embeddings) encodes it again and removes it after mining."""
    from test_episodes import _args

    import tevatron_tele.mining.filters as filters
    import tevatron_tele.runner.episodes as episodes
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.retrieval.scoring import load_score_table
    from tevatron_tele.runner.workspace import RunFolder

    tables: list[dict] = []  # what each scorer (one per mined pool) computed
    scores = filters.EmbeddingScorer.scores

    def recording(self, qid, docids):
        got = scores(self, qid, docids)
        if not getattr(self, "for_mining", False):  # (the runner also stores each episode's scores with one)
            return got
        if not hasattr(self, "recorded"):
            self.recorded = {}
            tables.append(self.recorded)
        self.recorded.setdefault(qid, {}).update(got)
        return got

    encoded: list[tuple[int, str]] = []
    encode = episodes.EpisodeRunner.embed

    def counting(self, i, collection, kind, name, model_state):
        from tevatron_tele.retrieval.embeddings import is_complete

        if not is_complete(self.folder.embeddings(i, name)):
            encoded.append((i, name))
        return encode(self, i, collection, kind, name, model_state)

    mining_scores = episodes.EpisodeRunner.mining_scores

    def tagged(self, prev):
        scorer = mining_scores(self, prev)
        scorer.for_mining = True
        return scorer

    monkeypatch.setattr(filters.EmbeddingScorer, "scores", recording)
    monkeypatch.setattr(episodes.EpisodeRunner, "embed", counting)
    monkeypatch.setattr(episodes.EpisodeRunner, "mining_scores", tagged)
    shared = tmp_path / "shared"
    settings = dict(num_episodes=2, refresh_steps=2, num_train_epochs=0.2, depth=10, sample=0, eval_split="",
                    analyze=False, embedding_dtype="float32", base_cache_dir=str(shared / "base"),
                    token_cache_dir=str(shared / "token_cache"), max_negative_ratio=0.98, skip_top=1,
                    momentum="forgotten-first")
    out = tmp_path / "run"
    run_args = _args(synthetic_dir, tiny_model_dir, out, **settings)
    episodes.run_episodes(run_args)
    folder = RunFolder(out)
    assert folder.done(2).exists()
    assert sorted(n for _, n in encoded).count("corpus") == 3, encoded  # episodes 0, 1, 2: once each
    for i in (0, 1, 2):
        assert not list((folder.episode(i) / "embeddings").glob("corpus*")), "corpus embeddings should be removed"
    collection = load_collection(synthetic_dir, "train")
    assert len(tables) == 2  # one scorer per mined pool, from episodes 0 and 1
    for i, table in zip((1, 2), tables):
        entries = read_pool(folder.pool(i))
        stats = read_json(pool_stats_path(folder.pool(i)))
        f = stats["positive_aware_filter"]
        # (a query all of whose candidates the filter drops leaves the pool: counted as dropped, no_negatives)
        ann = f["sources"]["ann"]
        assert f["max_negative_ratio"] == 0.98 and ann["skip_top"] == ann["queries"] == 120
        assert len(entries) == 120 - stats["dropped"]["no_negatives"]
        assert f["sources"]["ann"]["max_negative_ratio"] > 0 and f["sources"]["lookahead"]["max_negative_ratio"] > 0
        for e in entries:
            weakest = min(table[e.query_id][p] for p in e.positive_document_ids)
            threshold = ratio_threshold(weakest, 0.98)
            for source in ("ann", "lookahead", "momentum"):
                for d in e.sources.get(source, []):
                    assert table[e.query_id][d] <= threshold, (i, source, e.query_id, d)
            assert set(e.positive_document_ids) == set(collection.positives(e.query_id))
    # replay of pool 2: forgotten-first over pool 1 by scores.npz of episode 1 ... then filtered by the ratio rule,
    # which removes exactly those scored above the positive: the replayed copies are all filtered out again
    stored = load_score_table(folder.episode(1) / "scores.npz")
    replay = read_json(pool_stats_path(folder.pool(2)))["momentum_replay"]
    pool1 = {e.query_id: e.negative_document_ids for e in read_pool(folder.pool(1))}
    lost = sum(1 for q, ds in pool1.items() for d in ds
               if stored[q][d] > min(stored[q][p] for p in collection.positives(q)))
    assert replay["mode"] == "forgotten-first" and replay["forgotten"] == lost
    assert replay["negatives"] == sum(len(ds) for ds in pool1.values())
    # episode 0 from the base cache, without embeddings: encoded again for the filter, removed after mining
    encoded.clear()
    other = tmp_path / "again"
    episodes.run_episodes(_args(synthetic_dir, tiny_model_dir, other, **{**settings, "num_episodes": 1}))
    assert (0, "corpus") in encoded and not list((other / "episode-0" / "embeddings").glob("corpus*"))
    assert read_pool(RunFolder(other).pool(1)) == read_pool(folder.pool(1))
