"""Rank with stored embeddings (exact inner product) or with BM25, and write a TREC run.

    python -m tevatron_tele.driver.search --query_embeddings E/queries --corpus_embeddings E/corpus \
        --output rankings/queries.trec --depth 200 [--backend torch --device cuda] [--export_pyserini E/index]
    python -m tevatron_tele.driver.search --method bm25 --collection DATA --split test \
        --index_dir bm25-index --output rankings/bm25.trec --depth 1000
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import faiss

from ..arguments import FieldGroup, TeleArgumentParser
from ..data.collections import load_collection
from ..data.names import SearchBackend
from ..data.outputs import StepOutput
from ..retrieval.bm25 import bm25_run_to_file
from ..retrieval.embeddings import embedding_files
from ..retrieval.pyserini_index import export_pyserini_index
from ..retrieval.search import search_to_file
from ..utils import setup_logging

logger = logging.getLogger(__name__)


SearchMethod = Literal["dense", "bm25"]


@dataclass
class SearchArguments(FieldGroup):
    output: str = field(metadata={"help": "TREC run file to write"})
    method: SearchMethod = field(default="dense", metadata={"help": "exact search over embeddings, or BM25"})
    query_embeddings: str | None = field(default=None, metadata={"help": "prefix of query (or positive) embeddings"})
    corpus_embeddings: str | None = field(default=None, metadata={"help": "prefix of corpus embeddings (or shards)"})
    depth: int = field(default=200)
    backend: SearchBackend = field(default="faiss", metadata={"help": "exact search backend (dense)"})
    device: str = field(default="cpu", metadata={"help": "cpu | cuda[:N]"})
    memory_budget_mb: float | None = field(default=None, metadata={"help": "working memory for the corpus chunks"})
    export_pyserini: str | None = field(default=None, metadata={"help": "also write a Pyserini FAISS index folder"})
    collection: str | None = field(default=None, metadata={"help": "bm25: collection path"})
    split: str = field(default="test", metadata={"help": "bm25: whose queries to search"})
    passages: str | None = field(default=None, metadata={"help": "bm25: DPR passages tsv"})
    index_dir: str | None = field(default=None, metadata={"help": "bm25: Lucene index folder (built if absent)"})
    threads: int = field(default=1)
    tag: str | None = field(default=None, metadata={"help": "run tag (default: the method)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an earlier run of this step made from other "
                                                             "settings or inputs (never anything else)"})


def _run_counts(path: str) -> dict:
    """Queries and lines of a written TREC run (what the record says the run holds)."""
    queries, lines = set(), 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                queries.add(line.split(maxsplit=1)[0])
                lines += 1
    return {"queries": len(queries), "lines": lines}


def _search_dense(args: SearchArguments) -> str:
    if not args.query_embeddings or not args.corpus_embeddings:
        raise ValueError("--method dense needs --query_embeddings and --corpus_embeddings")
    output = StepOutput("search", [Path(args.output)], settings=_settings(args), inputs={
        "queries": embedding_files(args.query_embeddings), "corpus": embedding_files(args.corpus_embeddings)})
    if not output.reusable(overwrite=args.overwrite):
        faiss.omp_set_num_threads(max(1, args.threads))
        output.begin()
        search_to_file(args.query_embeddings, args.corpus_embeddings, args.output, args.depth, backend=args.backend,
                       device=args.device, memory_budget_mb=args.memory_budget_mb, tag=args.tag or "dense",
                       overwrite=True)
        output.commit(counts=_run_counts(args.output))
    if args.export_pyserini:
        export_pyserini_index(args.corpus_embeddings, args.export_pyserini, overwrite=args.overwrite)
    return args.output


def _settings(args: SearchArguments) -> dict:
    """What changes the ranking written (not the device, backend, threads or memory budget)."""
    return {"method": args.method, "depth": args.depth, "tag": args.tag,
            "split": args.split if args.method == "bm25" else None}


def run(args: SearchArguments) -> str:
    """Write a TREC run: exact dense search over stored embeddings, or BM25 through Pyserini.

    Args:
        args: the parsed flags.

    Returns:
        The run file's path.
    """
    if args.method == "bm25":
        if not args.collection or not args.index_dir:
            raise ValueError("--method bm25 needs --collection and --index_dir")
        collection = load_collection(args.collection, args.split, passages=args.passages)
        output = StepOutput("search", [Path(args.output)], settings=_settings(args),
                            inputs={"collection": collection.source_paths() or args.collection})
        if not output.reusable(overwrite=args.overwrite):
            output.begin()
            bm25_run_to_file(collection, args.index_dir, args.output, k=args.depth, threads=args.threads,
                             overwrite=True)
            output.commit(counts=_run_counts(args.output))
        return args.output
    return _search_dense(args)


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    (args,) = TeleArgumentParser(SearchArguments).parse_args_into_dataclasses(args=argv)
    run(args)


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
