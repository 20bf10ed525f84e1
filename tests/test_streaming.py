"""Streaming readers and writers: runs and pools looked up query by query, pools mined a batch at a time,
with the same results (and the same errors) as reading everything into memory."""
from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest

from tevatron_tele.data.pools import IndexedPool, PoolEntry, PoolError, iter_pool, read_pool, write_pool
from tevatron_tele.data.trec import IndexedRun, RunFileError, open_run, read_run, write_run
from tevatron_tele.mining import tele
from tevatron_tele.mining.tele import MiningConfig, mine_episode

RUN_TEXT = (
    "\ufeffq1 Q0 d1 1 3.5 t\r\n"
    "q1 Q0 d2 2 2.5 t\r\n"
    "\n"
    "q2 Q0 d9 2 1.0 t\n"
    "q2 Q0 d8 1 2.0 t\n"
    "q1 Q0 d3 3 0.5 t\n"  # q1 again, after q2: a second block
    "q3 d4 1\n"  # 3 columns: scored -rank
)


def test_indexed_run_reads_what_read_run_reads(tmp_path):
    path = tmp_path / "run.trec"
    path.write_bytes(RUN_TEXT.encode("utf-8"))
    run = IndexedRun(path)
    assert list(run) == ["q1", "q2", "q3"] and len(run) == 3
    assert "q2" in run and "q4" not in run
    assert dict(run) == read_run(path)
    assert run["q1"] == [("d1", 3.5), ("d2", 2.5), ("d3", 0.5)]
    assert run["q2"] == [("d8", 2.0), ("d9", 1.0)]  # in rank order, not line order
    assert run.get("q4") is None
    assert isinstance(open_run(path), IndexedRun) and open_run({"q": []}) == {"q": []}


def test_indexed_run_errors_name_the_line(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 d1 1 3.5 t\nq2 Q0 d1 1 nan t\nq2 Q0 d2 x 1.0 t\nq3 Q0 d5 1 1 t\nq3 Q0 d5 2 0 t\n")
    run = IndexedRun(path)  # only query ids are read on opening
    assert run["q1"] == [("d1", 3.5)]
    with pytest.raises(RunFileError, match=r"run\.trec:2: field 'score': not a finite number"):
        run["q2"]
    with pytest.raises(RunFileError, match=r"run\.trec:5: field 'docid': document 'd5' listed twice for query "
                                           r"'q3' \(first at line 4\)"):
        run["q3"]
    empty = tmp_path / "empty.trec"
    empty.write_text("\n\n")
    with pytest.raises(RunFileError, match=r"empty\.trec: field '<file>': empty"):
        IndexedRun(empty)


def _pool_entries() -> list[PoolEntry]:
    return [PoolEntry(f"q{i}", f"query {i} é", [f"p{i}"], [f"n{i}", "x", f"n{i}"], {"ann": [f"n{i}", "x"],
                                                                                  "momentum": [f"n{i}"]})
            for i in range(6)]


def test_indexed_pool_is_the_pool_by_query(tmp_path):
    path = tmp_path / "pool.jsonl"
    write_pool(path, _pool_entries())
    with open(path, "a", encoding="utf-8") as f:  # a line written by another tool: keys in another order
        f.write("\n" + json.dumps({"sources": {}, "query_text": "t", "negative_document_ids": ["a"],
                                   "positive_document_ids": ["b"], "query_id": "other \"q\""}) + "\n")
    pool = IndexedPool(path)
    assert dict(pool) == {e.query_id: e for e in read_pool(path)}
    assert list(pool)[-1] == 'other "q"' and len(pool) == 7
    assert pool["q4"] == _pool_entries()[4]
    with pytest.raises(KeyError):
        pool["q9"]


def test_indexed_pool_errors_name_the_line(tmp_path):
    path = tmp_path / "pool.jsonl"
    good = _pool_entries()[0].to_json()
    path.write_text(good + "\n" + _pool_entries()[1].to_json() + "\n" + good + "\n")
    with pytest.raises(PoolError, match=r"pool\.jsonl:3: field 'query_id': duplicate query_id 'q0' "
                                        r"\(first at line 1\)"):
        IndexedPool(path)
    path.write_text(good + "\n{\"query_id\": \n")
    with pytest.raises(PoolError, match=r"pool\.jsonl:2: field '<json>': malformed JSON"):
        IndexedPool(path)
    bad = json.loads(good) | {"query_id": "q7", "positive_document_ids": []}
    path.write_text(good + "\n" + json.dumps(bad) + "\n")
    pool = IndexedPool(path)  # a line's fields are checked when it is looked up
    with pytest.raises(PoolError, match=r"pool\.jsonl:2: field 'positive_document_ids': empty"):
        pool["q7"]


def test_iter_pool_yields_only_checked_entries(tmp_path):
    path = tmp_path / "pool.jsonl"
    entries = _pool_entries()
    entries[4].negative_document_ids = ["unknown"]
    write_pool(path, entries)
    asked: list[list[str]] = []

    class Corpus:  # checks many entries' ids in one call, as a Corpus does
        def unknown_ids(self, ids):
            asked.append(list(ids))
            return [d for d in ids if d == "unknown"]

    stream = iter_pool(path, known_doc_ids=Corpus())
    with pytest.raises(PoolError, match=r"pool\.jsonl:5: field 'negative_document_ids': unknown document id"):
        next(stream)  # the first entry is held back until the batch holding line 5 is checked
    assert len(asked) == 1 and "n0" in asked[0] and "n5" in asked[0]
    assert list(iter_pool(path)) == read_pool(path) == entries


def test_write_pool_streams_and_takes_stats_afterwards(tmp_path):
    path = tmp_path / "pool.jsonl"
    made: list[str] = []

    def entries():
        for e in _pool_entries():
            made.append(e.query_id)
            yield e

    write_pool(path, entries(), lambda: {"made": len(made)})
    stats = json.loads((tmp_path / "pool.stats.json").read_text())
    assert stats["made"] == 6 and stats["queries"] == 6 and stats["negatives"] == 18
    assert read_pool(path) == _pool_entries()


def _mining_inputs(tmp_path):
    rng = random.Random(5)
    docs = [f"d{i}" for i in range(300)]
    queries = {f"q{i}": f"query {i}" for i in range(23)}
    positives = {q: [docs[i], docs[i + 100]] if i % 4 == 0 else [docs[i]] for i, q in enumerate(queries)}
    positives["q22"] = []  # dropped: no positive
    collection = SimpleNamespace(queries=queries, answers=None, positives=lambda q: positives[q])
    query_run = {q: [(d, 9 - k / 10) for k, d in enumerate(rng.sample(docs, 40))] for q in list(queries)[:-2]}
    query_run["q1"] = [(positives["q1"][0], 9.5)] + [r for r in query_run["q1"] if r[0] != positives["q1"][0]]
    positive_run = {p[0]: [(d, 5 - k / 10) for k, d in enumerate(rng.sample(docs, 40))]
                    for p in list(positives.values())[3:] if p}
    previous = [PoolEntry(q, queries[q], positives[q], [d for d in rng.sample(docs, 12) if d not in positives[q]],
                          {"ann": [d for d in rng.sample(docs, 6) if d not in positives[q]]})
                for q in list(queries)[2:-1]] + [PoolEntry("gone", "a query no longer there", ["d1"], ["d2"], {})]
    scores = {q: {d: rng.random() for d in docs} for q in [*queries, "gone"]}
    write_run(tmp_path / "q.trec", query_run)
    write_run(tmp_path / "p.trec", positive_run)
    write_pool(tmp_path / "prev.jsonl", previous)
    return collection, query_run, positive_run, previous, scores


@pytest.mark.parametrize("config", [
    MiningConfig(depth=30, sample=8, seed=4),
    MiningConfig(depth=30, sample=5, seed=2, dedupe=True, all_positives=True, max_negative_ratio=0.9, skip_top=1,
                 momentum="forgotten-first"),
])
def test_mining_in_batches_gives_the_pool_of_one_batch(tmp_path, monkeypatch, config):
    """Batches of 4 queries (files streamed) write byte for byte the pool and stats of one batch over runs in
    memory, filter and replay counts included (the previous pool's query the collection lacks as well)."""
    collection, query_run, positive_run, previous, scores = _mining_inputs(tmp_path)
    whole = mine_episode(collection, tmp_path / "whole" / "pool.jsonl", query_run=query_run, positive_run=positive_run,
                         previous_pool=previous, config=config, scores=scores)
    monkeypatch.setattr(tele, "MINE_BATCH", 4)
    batched = mine_episode(collection, tmp_path / "batched" / "pool.jsonl", query_run=tmp_path / "q.trec",
                           positive_run=tmp_path / "p.trec", previous_pool=tmp_path / "prev.jsonl", config=config,
                           scores=scores)
    assert batched.read_bytes() == whole.read_bytes()
    assert (batched.parent / "pool.stats.json").read_text() == (whole.parent / "pool.stats.json").read_text()
    stats = json.loads((batched.parent / "pool.stats.json").read_text())
    assert stats["kept"] == 22 and stats["dropped"]["no_positive"] == 1
    assert stats["sources"]["momentum"]["queries"] == 20
    if config.momentum != "all":
        assert stats["momentum_replay"]["queries"] == 21  # "gone" counted, as when the pool was read whole


def test_a_custom_combine_sees_every_query_at_once(tmp_path, monkeypatch):
    collection, query_run, _, previous, _ = _mining_inputs(tmp_path)
    seen = []

    def combine(collection, sources, previous_pool, **kw):
        seen.append((sorted(sources["ann"]), sorted(sources["momentum"])))
        return tele.build_pool(collection, sources, previous_pool, **kw)

    monkeypatch.setattr(tele, "MINE_BATCH", 4)
    config = MiningConfig(depth=30, sample=8, hooks=tele.Hooks(combine=combine))
    custom = mine_episode(collection, tmp_path / "c" / "pool.jsonl", query_run=query_run, previous_pool=previous,
                          config=config)
    plain = mine_episode(collection, tmp_path / "p" / "pool.jsonl", query_run=query_run, previous_pool=previous,
                         config=MiningConfig(depth=30, sample=8))
    assert len(seen) == 1 and len(seen[0][0]) == 21 and "gone" in seen[0][1]
    assert custom.read_bytes() == plain.read_bytes()


def test_scores_stored_a_query_at_a_time_equal_the_table_made_whole(tmp_path):
    """The runner's streamed scores.npz (pools and base ranking looked up by query, an EmbeddingScorer) holds
    exactly the table of `score_pairs_from_embeddings` over `pairs_needed_by_episode`, and reads back alike."""
    import numpy as np

    from tevatron_tele.evaluation.analysis import build_probe, pairs_needed_by_episode, store_episode_scores
    from tevatron_tele.retrieval.embeddings import save_embeddings
    from tevatron_tele.retrieval.scoring import (
        EmbeddingScorer,
        StoredScores,
        load_score_table,
        score_pairs_from_embeddings,
    )

    rng = random.Random(1)
    vectors = np.random.default_rng(0).standard_normal((90, 8)).astype(np.float32)
    docs = [f"d{i}" for i in range(80)]
    qids = [f"q{i}" for i in range(10)]
    save_embeddings(tmp_path / "queries", vectors[80:], qids)
    save_embeddings(tmp_path / "corpus.shard-000-of-002", vectors[:50], docs[:50])
    save_embeddings(tmp_path / "corpus.shard-001-of-002", vectors[50:80], docs[50:])
    pos = {q: [docs[k]] for k, q in enumerate(qids)}
    pools = []
    for j, held in ((1, qids[:6]), (2, qids[2:8])):
        entries = [PoolEntry(q, q, pos[q], [d for d in rng.sample(docs, 9) if d not in pos[q]]) for q in held]
        write_pool(tmp_path / f"pool{j}.jsonl", entries)
        pools.append(entries)
    more = {q: pos[q] for q in qids[7:]}  # q8, q9: in no pool (pool 3's positives)
    base = {q: [(d, 1.0 - k / 100) for k, d in enumerate(rng.sample(docs, 12))] for q in qids[1:9]}
    write_run(tmp_path / "base.trec", base)

    positives: dict[str, list[str]] = {}
    for entries in pools:
        for e in entries:
            positives.setdefault(e.query_id, list(e.positive_document_ids))
    for q, ps in more.items():
        positives.setdefault(q, ps)
    probe = build_probe(read_run(tmp_path / "base.trec"), positives, 4)
    negatives = {j: {e.query_id: e.negative_document_ids for e in es} for j, es in enumerate(pools, start=1)}
    whole = score_pairs_from_embeddings(tmp_path / "queries", tmp_path / "corpus",
                                        pairs_needed_by_episode(negatives, probe, positives)[2])

    written = store_episode_scores(tmp_path / "scores.npz", EmbeddingScorer(tmp_path / "queries", tmp_path / "corpus"),
                                   [tmp_path / f"pool{j}.jsonl" for j in (1, 2)], more, tmp_path / "base.trec", 4)
    assert load_score_table(tmp_path / "scores.npz") == whole
    assert written == sum(len(r) for r in whole.values())
    assert "q8" in whole and "q9" not in whole and "q0" in whole  # q8: probe only; q9: neither pool nor probe
    stored = StoredScores(tmp_path / "scores.npz")
    assert len(stored) == len(whole) and stored.pairs() == written and stored["q3"] == whole["q3"]


def test_stored_scores_read_the_earlier_format(tmp_path):
    """A scores.npz of one query id per pair (as earlier runs wrote it) reads as the same table."""
    import numpy as np

    from tevatron_tele.retrieval.scoring import StoredScores, load_score_table, save_score_table

    table = {"q1": {"a": 0.5, "b": -1.0}, "q2": {"é": 2.0}, "q3": {}}
    with open(tmp_path / "old.npz", "wb") as f:
        np.savez_compressed(f, qids=np.asarray(["q1", "q1", "q2"]), docids=np.asarray(["a", "b", "é"]),
                            scores=np.asarray([0.5, -1.0, 2.0], dtype=np.float32))
    assert load_score_table(tmp_path / "old.npz") == {q: r for q, r in table.items() if r}
    save_score_table(tmp_path / "new.npz", table)
    assert load_score_table(tmp_path / "new.npz") == table
    assert "q3" in StoredScores(tmp_path / "new.npz") and StoredScores(tmp_path / "new.npz").get("q4") is None
