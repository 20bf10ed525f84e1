"""Teleportation negatives: the hooks, pool building and statistics, and encode -> search -> mine end to end."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from tevatron_tele.data.pools import PoolEntry, pool_stats_path, read_pool
from tevatron_tele.data.trec import read_run, write_run
from tevatron_tele.mining.tele import (
    Hooks,
    MiningConfig,
    ann_negatives,
    build_pool,
    lookahead_negatives,
    mine_episode,
    momentum_negatives,
)
from tevatron_tele.utils import read_json

RUN = {
    "q1": [(f"d{i}", 100.0 - i) for i in range(50)],
    "q2": [(f"d{i}", 50.0 - i) for i in range(10, 40)],
}
POSITIVES = {"q1": ["d3", "d7"], "q2": ["d12"], "q3": ["d1"]}


def test_ann_negatives_drop_positives_respect_depth_and_sample():
    full = ann_negatives(RUN, POSITIVES, depth=20, sample=None)
    assert full["q1"] == [f"d{i}" for i in range(20) if i not in (3, 7)]
    assert "q3" not in full  # not ranked
    sampled = ann_negatives(RUN, POSITIVES, depth=20, sample=5, rng=1)
    assert len(sampled["q1"]) == 5 and set(sampled["q1"]) <= set(full["q1"])
    ranks = [int(d[1:]) for d in sampled["q1"]]
    assert ranks == sorted(ranks)  # kept in rank order
    assert sampled == ann_negatives(RUN, POSITIVES, depth=20, sample=5, rng=1)
    assert sampled != ann_negatives(RUN, POSITIVES, depth=20, sample=5, rng=2)
    # a query's sample does not depend on which other queries are mined
    assert ann_negatives(RUN, {"q1": POSITIVES["q1"]}, depth=20, sample=5, rng=1)["q1"] == sampled["q1"]
    shared = random.Random(3)
    assert len(ann_negatives(RUN, POSITIVES, depth=20, sample=5, rng=shared)["q2"]) == 5
    assert ann_negatives(RUN, POSITIVES, depth=20, sample=5, rng=1, exclude={"q2": {"d10"}})["q2"].count("d10") == 0


def test_lookahead_first_or_all_positives():
    positive_run = {"d3": [("d3", 9.0), ("d7", 8.0), ("x1", 7.0), ("x2", 6.0)],
                    "d7": [("d7", 9.5), ("y1", 8.5), ("x2", 7.5)]}
    first = lookahead_negatives(positive_run, POSITIVES, depth=10, sample=None)
    assert first == {"q1": ["x1", "x2"]}
    both = lookahead_negatives(positive_run, POSITIVES, depth=10, sample=None, all_positives=True)
    assert both == {"q1": ["y1", "x2", "x1"]}  # merged by best score, positives dropped


def test_build_pool_stats_and_drops():
    collection = SimpleNamespace(queries={"q1": "one", "q2": "two", "q3": "three", "q4": "four"},
                                 positives=lambda q: POSITIVES.get(q, []))
    previous = [PoolEntry("q1", "one", ["d3"], ["d0", "d1", "d3"], {"ann": ["d0", "d1", "d3"]})]
    sources = {
        "ann": {"q1": ["d0", "d1", "d2"], "q2": ["d10"]},
        "lookahead": {"q1": ["d2", "d5"]},
        "momentum": momentum_negatives(previous),
    }
    entries, stats = build_pool(collection, sources, previous)
    by_q = {e.query_id: e for e in entries}
    assert set(by_q) == {"q1", "q2"}
    # momentum's d3 is a judged positive of q1: removed and counted
    assert by_q["q1"].negative_document_ids == ["d0", "d1", "d2", "d2", "d5", "d0", "d1"]
    assert by_q["q1"].sources["momentum"] == ["d0", "d1"]
    assert stats["sources"]["momentum"]["positives_removed"] == 1
    assert stats["dropped"] == {"no_positive": 1, "no_negatives": 1}
    assert stats["dropped_examples"] == {"no_positive": ["q4"], "no_negatives": ["q3"]}
    assert stats["overlap_between_sources_jaccard"]["ann|lookahead"] == pytest.approx(1 / 4)
    assert stats["overlap_with_previous_ann_jaccard"] == {"mean": pytest.approx(2 / 4), "queries": 1}
    assert stats["repeated_negatives"] == 3
    deduped, _ = build_pool(collection, sources, previous, dedupe=True)
    assert deduped[0].negative_document_ids == ["d0", "d1", "d2", "d5"]


def test_overlap_with_previous_ann_negatives_hand_computed(tmp_path):
    """Two episodes that rank differently: the stat is the mean per-query Jaccard of their ANN negatives."""
    collection = SimpleNamespace(queries={"q1": "one", "q2": "two"}, answers=None,
                                 positives=lambda q: {"q1": ["p1"], "q2": ["p2"]}[q])
    config = MiningConfig(depth=3, sample=None)
    first = {"q1": [("a", 4.0), ("b", 3.0), ("c", 2.0), ("p1", 1.0)], "q2": [("x", 3.0), ("y", 2.0), ("p2", 1.0)]}
    second = {"q1": [("b", 4.0), ("c", 3.0), ("d", 2.0), ("p1", 1.0)], "q2": [("z", 3.0), ("p2", 2.0), ("x", 1.0)]}
    pool1 = mine_episode(collection, tmp_path / "1.jsonl", query_run=first, config=config)
    pool2 = mine_episode(collection, tmp_path / "2.jsonl", query_run=second, previous_pool=pool1, config=config)
    assert {e.query_id: e.sources["ann"] for e in read_pool(pool2)} == {"q1": ["b", "c", "d"], "q2": ["z", "x"]}
    # q1: {a, b, c} vs {b, c, d} -> 2/4; q2: {x, y} vs {z, x} -> 1/3; mean 5/12
    overlap = read_json(pool_stats_path(pool2))["overlap_with_previous_ann_jaccard"]
    assert overlap == {"mean": round(5 / 12, 6), "queries": 2}
    assert read_json(pool_stats_path(pool1))["overlap_with_previous_ann_jaccard"] is None


def _pipeline(collection_dir, model_dir, work, *, max_len=48, batch_size=64):
    """Encode corpus, queries and positives; rank queries and positives; mine episodes 1 and 2 (episode 2's query
    ranking is episode 1's without its top 5, so that the two episodes' ANN negatives differ)."""
    from tevatron_tele.backends import load_encoder
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.data.token_cache import corpus_token_cache, query_token_cache
    from tevatron_tele.retrieval.encode import encode_to_file
    from tevatron_tele.retrieval.search import search_to_file

    torch.set_num_threads(1)
    collection = load_collection(collection_dir, "train")
    model, tokenizer = load_encoder(model_dir, "cpu")
    corpus = corpus_token_cache(collection, tokenizer, max_len, work / "cache")
    queries = query_token_cache(collection, tokenizer, 16, work / "cache")
    kw = dict(model=model, tokenizer=tokenizer, batch_size=batch_size, progress=False)
    positive_ids = sorted({d for q in collection.queries for d in collection.positives(q)})
    c = encode_to_file(corpus, work / "emb" / "corpus", is_query=False, max_len=max_len, num_shards=1, **kw)
    q = encode_to_file(queries, work / "emb" / "queries", is_query=True, max_len=16, **kw)
    p = encode_to_file(corpus, work / "emb" / "positives", is_query=False, max_len=max_len, ids=positive_ids,
                       **kw)
    query_run = search_to_file(q, c, work / "rankings" / "queries.trec", 200)
    positive_run = search_to_file(p, c, work / "rankings" / "positives.trec", 200)
    pool1 = mine_episode(collection, work / "episode-1" / "pool.jsonl", query_run=query_run,
                         positive_run=positive_run)
    query_run_2 = work / "rankings" / "queries-2.trec"
    write_run(query_run_2, {q: ranked[5:] for q, ranked in read_run(query_run).items()})
    pool2 = mine_episode(collection, work / "episode-2" / "pool.jsonl", query_run=query_run_2,
                         positive_run=positive_run, previous_pool=pool1)
    return collection, pool1, pool2


def _check_episode_two(collection, pool1, pool2):
    entries = read_pool(pool2, known_doc_ids=set(collection.corpus.ids))
    assert entries
    stats = read_json(pool_stats_path(pool2))
    for name in ("ann", "lookahead", "momentum"):
        assert stats["sources"][name]["negatives"] > 0
    previous = {e.query_id: e for e in read_pool(pool1)}
    for e in entries:
        judged = set(collection.positives(e.query_id))
        assert judged and not judged & set(e.negative_document_ids)
        assert set(e.positive_document_ids) == judged
        assert e.sources["momentum"] == previous[e.query_id].negative_document_ids
        assert len(e.sources["ann"]) <= 30 and len(e.sources["lookahead"]) <= 30
    # the mean per-query Jaccard of the two episodes' ANN negatives, from the pools themselves
    ann1 = {e.query_id: set(e.sources["ann"]) for e in previous.values()}
    jaccards = [len(ann1[e.query_id] & set(e.sources["ann"])) / len(ann1[e.query_id] | set(e.sources["ann"]))
                for e in entries]
    overlap = stats["overlap_with_previous_ann_jaccard"]
    assert overlap["queries"] == len(entries)
    assert overlap["mean"] == pytest.approx(sum(jaccards) / len(jaccards), abs=1e-6)
    assert 0 < overlap["mean"] < 0.9  # a sample of ranks 6..205 is not that of ranks 1..200
    return entries


def test_encode_search_mine_synthetic(synthetic_dir, tiny_model_dir, tmp_path):
    collection, pool1, pool2 = _pipeline(synthetic_dir, tiny_model_dir, tmp_path)
    entries = _check_episode_two(collection, pool1, pool2)
    assert len(entries) == sum(1 for q in collection.queries if collection.positives(q))
    # same seed, same pool; another seed, another sample
    again = mine_episode(collection, tmp_path / "again.jsonl", query_run=tmp_path / "rankings" / "queries-2.trec",
                         positive_run=tmp_path / "rankings" / "positives.trec", previous_pool=pool1)
    assert again.read_text() == pool2.read_text()
    other = mine_episode(collection, tmp_path / "other.jsonl", query_run=tmp_path / "rankings" / "queries-2.trec",
                         positive_run=tmp_path / "rankings" / "positives.trec", previous_pool=pool1,
                         config=MiningConfig(seed=1))
    assert other.read_text() != pool2.read_text()
    # an existing pool is not rebuilt
    mtime = pool2.stat().st_mtime_ns
    mine_episode(collection, pool2, query_run={})
    assert pool2.stat().st_mtime_ns == mtime


def test_replaced_hook_and_mine_driver(synthetic_dir, tiny_model_dir, tmp_path):
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.driver.mine import main

    collection, pool1, _ = _pipeline(synthetic_dir, tiny_model_dir, tmp_path)

    def top_two(query_run, positives, **kw):
        return {q: [d for d, _ in query_run[q] if d not in positives[q]][:2] for q in positives if q in query_run}

    path = mine_episode(collection, tmp_path / "custom.jsonl", query_run=tmp_path / "rankings" / "queries.trec",
                        config=MiningConfig(hooks=Hooks(ann=top_two)))
    assert all(len(e.negative_document_ids) == 2 for e in read_pool(path))
    out = tmp_path / "driver" / "pool.jsonl"
    main(["--collection", str(synthetic_dir), "--output", str(out), "--query_run",
          str(tmp_path / "rankings" / "queries.trec"), "--previous_pool", str(pool1), "--sample", "4"])
    entries = read_pool(out)
    assert {len(e.sources["ann"]) for e in entries} == {4}
    assert load_collection(synthetic_dir, "train").queries.keys() >= {e.query_id for e in entries}


@pytest.mark.slow
def test_encode_search_mine_scifact(scifact_dir, tmp_path):
    from tevatron_tele.data.synthetic import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "tiny", vocab_source=scifact_dir, max_words=5000)
    collection, pool1, pool2 = _pipeline(scifact_dir, model_dir, tmp_path, max_len=64, batch_size=128)
    entries = _check_episode_two(collection, pool1, pool2)
    assert len(entries) > 700  # SciFact train: 809 queries with judged positives
