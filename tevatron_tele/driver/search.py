"""Rank with stored embeddings (exact inner product) or with BM25, and write a TREC run.

    python -m tevatron_tele.driver.search --query_embeddings E/queries --corpus_embeddings E/corpus \
        --output rankings/queries.trec --depth 200 [--backend torch --device cuda] [--export_pyserini E/index]
    python -m tevatron_tele.driver.search --method bm25 --collection DATA --split test \
        --index_dir bm25-index --output rankings/bm25.trec --depth 1000
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from ..utils import setup_logging

logger = logging.getLogger(__name__)


@dataclass
class SearchArguments:
    output: str = field(metadata={"help": "TREC run file to write"})
    method: str = field(default="dense", metadata={"help": "dense | bm25"})
    query_embeddings: str | None = field(default=None, metadata={"help": "prefix of query (or positive) embeddings"})
    corpus_embeddings: str | None = field(default=None, metadata={"help": "prefix of corpus embeddings (or shards)"})
    depth: int = field(default=200)
    backend: str = field(default="faiss", metadata={"help": "faiss | torch"})
    device: str = field(default="cpu", metadata={"help": "cpu | cuda[:N]"})
    memory_budget_mb: float | None = field(default=None, metadata={"help": "working memory for the corpus chunks"})
    export_pyserini: str | None = field(default=None, metadata={"help": "also write a Pyserini FAISS index folder"})
    collection: str | None = field(default=None, metadata={"help": "bm25: collection path"})
    split: str = field(default="test", metadata={"help": "bm25: whose queries to search"})
    passages: str | None = field(default=None, metadata={"help": "bm25: DPR passages tsv"})
    index_dir: str | None = field(default=None, metadata={"help": "bm25: Lucene index folder (built if absent)"})
    threads: int = field(default=1)
    tag: str | None = field(default=None, metadata={"help": "run tag (default: the method)"})


def run(args: SearchArguments) -> str:
    if args.method == "bm25":
        from ..data.collections import load_collection
        from ..retrieval.bm25 import bm25_run_to_file

        if not args.collection or not args.index_dir:
            raise ValueError("--method bm25 needs --collection and --index_dir")
        collection = load_collection(args.collection, args.split, passages=args.passages)
        return str(bm25_run_to_file(collection, args.index_dir, args.output, k=args.depth, threads=args.threads))
    if args.method != "dense":
        raise ValueError(f"--method must be dense or bm25, got {args.method!r}")
    if not args.query_embeddings or not args.corpus_embeddings:
        raise ValueError("--method dense needs --query_embeddings and --corpus_embeddings")
    import faiss

    from ..retrieval.search import export_pyserini_index, search_to_file

    faiss.omp_set_num_threads(max(1, args.threads))
    path = search_to_file(args.query_embeddings, args.corpus_embeddings, args.output, args.depth,
                          backend=args.backend, device=args.device, memory_budget_mb=args.memory_budget_mb,
                          tag=args.tag or "dense")
    if args.export_pyserini:
        export_pyserini_index(args.corpus_embeddings, args.export_pyserini)
    return str(path)


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    (args,) = HfArgumentParser(SearchArguments).parse_args_into_dataclasses(args=argv)
    run(args)


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
