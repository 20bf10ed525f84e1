"""Exact top-k search: FAISS and torch agree with brute force, shards and memory budgets change nothing."""
from __future__ import annotations

import numpy as np
import pytest

from tevatron_tele.data.trec import read_run
from tevatron_tele.retrieval.embeddings import (
    load_all,
    load_embeddings,
    load_rows,
    save_embeddings,
    shard_prefix,
    shard_prefixes,
)
from tevatron_tele.retrieval.search import plan_chunks, search, search_arrays, search_to_file


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    rng = np.random.default_rng(7)
    corpus = rng.standard_normal((3000, 24)).astype(np.float16)
    queries = rng.standard_normal((40, 24)).astype(np.float32)
    ids = [f"doc{i}" for i in range(len(corpus))]
    root = tmp_path_factory.mktemp("emb")
    save_embeddings(root / "whole", corpus, ids)
    for i, rows in enumerate(np.array_split(np.arange(len(corpus)), 3)):
        save_embeddings(shard_prefix(root / "sharded", i, 3), corpus[rows], [ids[r] for r in rows])
    save_embeddings(root / "queries", queries, [f"q{i}" for i in range(len(queries))])
    return root, corpus, queries, ids


def _brute_force(queries, corpus, k):
    scores = queries @ corpus.astype(np.float32).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), order


def _same_up_to_ties(s1, i1, s2, i2):
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-4)
    differ = i1 != i2
    # a differing id is only allowed where the two scores tie
    assert np.all(np.isclose(s1[differ], s2[differ], rtol=1e-5, atol=1e-4))
    return differ.mean()


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_backend_matches_brute_force(vectors, backend):
    root, corpus, queries, _ = vectors
    want_s, want_i = _brute_force(queries, corpus, 50)
    got_s, got_i = search_arrays(queries, root / "whole", 50, backend=backend, progress=False)
    assert _same_up_to_ties(got_s, got_i, want_s, want_i) < 0.01


def test_faiss_and_torch_return_same_ids(vectors):
    root, _, queries, _ = vectors
    qids = [f"q{i}" for i in range(len(queries))]
    a = search(queries, qids, root / "whole", 20, backend="faiss", progress=False)
    b = search(queries, qids, root / "whole", 20, backend="torch", progress=False)
    for q in qids:
        assert [d for d, _ in a[q]] == [d for d, _ in b[q]]
        np.testing.assert_allclose([s for _, s in a[q]], [s for _, s in b[q]], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_sharded_and_chunked_equal_unsharded(vectors, backend):
    root, _, queries, _ = vectors
    whole_s, whole_i = search_arrays(queries, root / "whole", 30, backend=backend, progress=False)
    # a 0.4 MB budget forces many small corpus chunks inside each of the 3 shards
    assert plan_chunks(24, len(queries), 30, 0.4)[1] < 1000
    shard_s, shard_i = search_arrays(queries, root / "sharded", 30, backend=backend, memory_budget_mb=0.4,
                                     progress=False)
    np.testing.assert_array_equal(shard_i, whole_i)
    np.testing.assert_allclose(shard_s, whole_s, rtol=1e-6)


def test_depth_beyond_corpus_and_ids_mapping(vectors, tmp_path):
    _, corpus, queries, ids = vectors
    save_embeddings(tmp_path / "small", corpus[:5], ids[:5])
    run = search(queries[:2], ["a", "b"], tmp_path / "small", 10, progress=False)
    assert len(run["a"]) == 5 and {d for d, _ in run["a"]} == set(ids[:5])
    scores = [s for _, s in run["a"]]
    assert scores == sorted(scores, reverse=True)


def test_search_to_file_writes_run_once(vectors, tmp_path):
    root, corpus, queries, ids = vectors
    path = search_to_file(root / "queries", root / "sharded", tmp_path / "run.trec", 5)
    run = read_run(path)
    _, want = _brute_force(queries, corpus, 5)
    assert [d for d, _ in run["q3"]] == [ids[i] for i in want[3]]
    mtime = path.stat().st_mtime_ns
    search_to_file(root / "queries", root / "sharded", path, 5)
    assert path.stat().st_mtime_ns == mtime


def test_search_to_file_progress_bar_only_when_asked(vectors, tmp_path, capfd):
    root, *_ = vectors
    search_to_file(root / "queries", root / "sharded", tmp_path / "quiet.trec", 5, progress=False)
    assert "search" not in capfd.readouterr().err
    search_to_file(root / "queries", root / "sharded", tmp_path / "shown.trec", 5)
    assert "search" in capfd.readouterr().err


def test_embedding_files_roundtrip_and_errors(vectors, tmp_path):
    root, corpus, _, ids = vectors
    assert len(shard_prefixes(root / "sharded")) == 3
    merged, merged_ids = load_all(root / "sharded")
    np.testing.assert_array_equal(merged, corpus)
    assert merged_ids == ids
    array, got_ids = load_embeddings(root / "whole")
    assert isinstance(array, np.memmap) and got_ids == ids
    with pytest.raises(ValueError, match="ids"):
        save_embeddings(tmp_path / "bad", corpus[:3], ids[:2])
    with pytest.raises(FileNotFoundError, match="missing"):
        save_embeddings(shard_prefix(tmp_path / "gap", 0, 2), corpus[:3], ids[:3])
        shard_prefixes(tmp_path / "gap")
    with pytest.raises(ValueError, match="dim"):
        search_arrays(np.zeros((1, 5), np.float32), root / "whole", 3, progress=False)
    with pytest.raises(ValueError, match="backend"):
        search_arrays(np.zeros((1, 24), np.float32), root / "whole", 3, backend="annoy", progress=False)


def test_load_rows_reads_wanted_vectors_across_shards(vectors):
    root, corpus, _, ids = vectors
    wanted = {"doc2999", "doc5", "doc1500", "not-a-doc"}  # one id per shard, and one without a vector
    for prefix in (root / "whole", root / "sharded"):
        rows, found = load_rows(prefix, wanted)
        assert found == ["doc5", "doc1500", "doc2999"]  # storage order; the unknown id is skipped
        assert rows.dtype == corpus.dtype
        np.testing.assert_array_equal(rows, corpus[[5, 1500, 2999]])
