"""BM25 through Pyserini: a Lucene index of the collection, BM25 runs, and BM25 negatives.

`ensure_pyserini()` makes Pyserini start in this process (a Java 21+ runtime, the JVM options it lacks, a dummy
OPENAI_API_KEY: see `retrieval.java`); every function here calls it before importing from `pyserini`. Pyserini's named
topics, qrels and prebuilt indexes are never used: indexes are built from local files, queries passed as text.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import numpy as np

from ..data.collections import Collection, Corpus
from ..data.trec import Run, write_run
from ..utils import PathLike, atomic_path
from .java import MIN_JAVA, PyseriniUnavailableError, find_java, prepare_jvm

logger = logging.getLogger(__name__)

__all__ = ["MIN_JAVA", "PyseriniUnavailableError", "bm25_run_to_file", "bm25_search", "build_lucene_index",
           "check_faiss_index_with_pyserini", "ensure_pyserini", "find_java", "write_index_docs"]
_STATE: dict = {}
_NOT_INSTALLED = "Pyserini is not installed; install the extra: pip install -e '.[pyserini]'"


def _pyserini(module: str) -> ModuleType:
    """A Pyserini (or pyjnius) module, imported only now: an optional extra, whose JVM needs `ensure_pyserini` first."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise PyseriniUnavailableError(_NOT_INSTALLED) from e


def ensure_pyserini() -> dict:
    """Prepare the process so that Pyserini can start its JVM; idempotent. Must run before the first import of a
    Pyserini module that starts the JVM (pyserini.search, pyserini.index.lucene, pyserini.eval.trec_eval).

    Returns:
        What it set up: {"java_home", "java_version", "vector_module"} (and "jvm_already_running").
    """
    if _STATE:
        return dict(_STATE)
    jnius_config = _pyserini("jnius_config")
    os.environ.setdefault("OPENAI_API_KEY", "unused")
    if jnius_config.vm_running:
        _STATE.update(java_home=os.environ.get("JAVA_HOME"), vector_module=None, jvm_already_running=True)
        return dict(_STATE)
    state = prepare_jvm(jnius_config)
    _pyserini("pyserini")
    _STATE.update(state)
    logger.info("Pyserini will use Java %s at %s%s", _STATE["java_version"], _STATE["java_home"],
                "" if _STATE["vector_module"] else " (without the jdk.incubator.vector module)")
    return dict(_STATE)


def write_index_docs(corpus: Corpus, docs_dir: PathLike) -> Path:
    """The corpus as Pyserini's JsonCollection, the input of `python -m pyserini.index.lucene -collection JsonCollection
    -input DOCS_DIR ...`: title and text in one field, title first (BEIR's "flat" indexes).

    Args:
        corpus: the passages.
        docs_dir: the folder to write `docs.jsonl` ({"id", "contents"} per line) into.

    Returns:
        `docs_dir`.
    """
    docs_dir = Path(docs_dir)
    docs_dir.mkdir(parents=True, exist_ok=True)
    with open(docs_dir / "docs.jsonl", "w", encoding="utf-8") as f:
        for docid, title, text in zip(corpus.ids, corpus.titles, corpus.texts):
            f.write(json.dumps({"id": docid, "contents": f"{title} {text}" if title else text}) + "\n")
    return docs_dir


def build_lucene_index(corpus: Corpus, index_dir: PathLike, *, threads: int = 1, overwrite: bool = False) -> Path:
    """Index the corpus (title + text in one field) as `python -m pyserini.index.lucene` does, in this process.

    Args:
        corpus: the passages.
        index_dir: the index folder; an existing Lucene index there is kept unless `overwrite`.
        threads: indexing threads.
        overwrite: index again.

    Returns:
        `index_dir`.
    """
    index_dir = Path(index_dir)
    if index_dir.is_dir() and any(index_dir.glob("segments_*")) and not overwrite:
        logger.info("Lucene index %s exists; not indexing again", index_dir)
        return index_dir
    ensure_pyserini()
    started = time.perf_counter()
    with atomic_path(index_dir, replaces=lambda p: any(p.glob("segments_*"))) as tmp:  # only a Lucene index
        docs = write_index_docs(corpus, tmp.parent / "docs")
        autoclass = _pyserini("pyserini.pyclass").autoclass  # sets Anserini's classpath, then starts the JVM
        autoclass("io.anserini.index.IndexCollection").main([
            "-collection", "JsonCollection", "-generator", "DefaultLuceneDocumentGenerator", "-input", str(docs),
            "-index", str(tmp), "-threads", str(threads), "-storePositions", "-storeDocvectors", "-storeRaw", "-quiet"])
    logger.info("indexed %d passages into %s in %.1f s", len(corpus.ids), index_dir, time.perf_counter() - started)
    return index_dir


def bm25_search(index_dir: PathLike, queries: Mapping[str, str], k: int = 1000, *, threads: int = 1,
                k1: float = 0.9, b: float = 0.4, batch_size: int = 512) -> Run:
    """BM25 top-k of each query with Pyserini's LuceneSearcher.

    Args:
        index_dir: a Lucene index (`build_lucene_index`).
        queries: {query id: text}.
        k: depth.
        threads: search threads.
        k1, b: BM25's parameters (Pyserini's defaults).
        batch_size: queries per batch search.

    Returns:
        {query id: [(docid, score), ...]}.
    """
    ensure_pyserini()
    searcher = _pyserini("pyserini.search.lucene").LuceneSearcher(str(index_dir))
    searcher.set_bm25(k1, b)
    qids = list(queries)
    run: Run = {}
    for start in range(0, len(qids), batch_size):
        chunk = qids[start:start + batch_size]
        hits = searcher.batch_search([queries[q] for q in chunk], chunk, k=k, threads=threads)
        for q in chunk:
            run[q] = [(h.docid, float(h.score)) for h in hits.get(q, [])]
    searcher.close()
    return run


def bm25_run_to_file(collection: Collection, index_dir: PathLike, run_path: PathLike, *, k: int = 1000,
                     threads: int = 1, queries: Mapping[str, str] | None = None, overwrite: bool = False) -> Path:
    """Build (or reuse) the Lucene index of a collection's corpus, search its queries, write a TREC run.

    Args:
        collection: the collection.
        index_dir: the index folder.
        run_path: the run file; an existing one is kept unless `overwrite`.
        k: depth.
        threads: indexing and search threads.
        queries: {query id: text} (default: the collection's queries).
        overwrite: search again.

    Returns:
        `run_path`.
    """
    run_path = Path(run_path)
    if run_path.exists() and not overwrite:
        logger.info("BM25 run %s exists; not searching again", run_path)
        return run_path
    build_lucene_index(collection.corpus, index_dir, threads=threads)
    started = time.perf_counter()
    run = bm25_search(index_dir, queries if queries is not None else collection.queries, k, threads=threads)
    logger.info("BM25 searched %d queries in %.1f s; writing %s", len(run), time.perf_counter() - started, run_path)
    write_run(run_path, run, tag="bm25")
    return run_path


def check_faiss_index_with_pyserini(index_dir: PathLike, query_emb: np.ndarray, k: int = 10
                                    ) -> list[list[tuple[str, float]]]:
    """Search an exported FAISS index folder through Pyserini's FaissSearcher.

    Args:
        index_dir: the folder (`retrieval.pyserini_index.export_pyserini_index`).
        query_emb: query vectors, one row each.
        k: depth.

    Returns:
        [(docid, score), ...] per query.
    """
    ensure_pyserini()
    searcher = _pyserini("pyserini.search.faiss").FaissSearcher(str(index_dir), None)
    return [[(h.docid, float(h.score)) for h in searcher.search(row.reshape(1, -1).astype("float32"), k=k)]
            for row in query_emb]
