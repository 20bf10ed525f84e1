"""Build episode i's negative pool from rankings: ANN, lookahead, momentum and (optionally) BM25.

    python -m tevatron_tele.driver.mine --collection DATA --split train --output RUN/episode-2/pool.jsonl \
        --query_run RUN/episode-1/rankings/queries.trec --positive_run RUN/episode-1/rankings/positives.trec \
        --previous_pool RUN/episode-1/pool.jsonl [--bm25_run bm25.trec] --depth 200 --sample 30 --seed 0

Positive-aware filter (every source; see tevatron_tele/mining/filters.py): --max_negative_ratio 0.95, --negative_margin
0.05, --skip_top 10; forgotten-negative replay: --momentum forgotten-first|forgotten-only. The ratio / margin rules and
replay need the mining model's S(q, d): --query_embeddings RUN/episode-1/embeddings/train-queries --corpus_embeddings
RUN/episode-1/embeddings/corpus (the episode's embedding prefixes), or --scores RUN/episode-1/scores.npz (a stored
table; it covers only pools and positives, so it serves replay but not the filter of fresh rankings).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..arguments import FilterFields, MiningFields, TeleArgumentParser
from ..data.collections import Collection, load_collection
from ..data.outputs import StepOutput
from ..data.pools import pool_stats_path
from ..data.trec import check_run_documents
from ..mining.tele import MiningConfig, mine_episode
from ..retrieval.embeddings import embedding_files
from ..retrieval.scoring import EmbeddingScorer
from ..utils import read_json, setup_logging

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class MineArguments(FilterFields, MiningFields):
    collection: str = field(metadata={"help": "collection path"})
    output: str = field(metadata={"help": "pool.jsonl to write (pool.stats.json goes beside it)"})
    split: str = field(default="train")
    passages: str | None = field(default=None, metadata={"help": "DPR passages tsv (DPR json collections)"})
    query_run: str | None = field(default=None, metadata={"help": "TREC run of the queries (ANN negatives)"})
    positive_run: str | None = field(default=None, metadata={"help": "TREC run keyed by positive docid (lookahead)"})
    previous_pool: str | None = field(default=None, metadata={"help": "previous episode's pool.jsonl (momentum)"})
    bm25_run: str | None = field(default=None, metadata={"help": "TREC BM25 run of the queries (BM25 negatives)"})
    seed: int = field(default=0, metadata={"help": "seed of each query's sample"})
    all_positives: bool = field(default=False, metadata={"help": "lookahead from every positive, not the first"})
    dedupe: bool = field(default=False, metadata={"help": "drop repeated negatives across sources"})
    query_embeddings: str | None = field(default=None, metadata={"help": "the mining model's training-query "
                                                                         "embeddings (prefix), for the scores"})
    corpus_embeddings: str | None = field(default=None, metadata={"help": "the mining model's corpus embeddings "
                                                                          "(prefix), for the scores"})
    scores: str | None = field(default=None, metadata={"help": "a stored score table (.npz, e.g. RUN/episode-1/"
                                                               "scores.npz) instead of the embeddings"})
    overwrite: bool = field(default=False, metadata={"help": "replace an earlier pool of this step made from other "
                                                             "settings or inputs (never anything else)"})


# what changes the pool written; the input files are compared by content
_SETTINGS = ("split", "depth", "sample", "seed", "all_positives", "dedupe", "max_negative_ratio", "filter_positive",
             "negative_margin", "skip_top", "momentum", "train_positives")


def step_output(args: MineArguments, collection: Collection) -> StepOutput:
    """The pool's and its stats' contract: mining settings, collection files, rankings, previous pool, scores' files.

    Args:
        args: the driver's arguments.
        collection: the loaded collection (its `source_files` are inputs).

    Returns:
        The StepOutput of `pool.jsonl` + `pool.stats.json`.
    """
    inputs = {"collection": collection.source_paths() or args.collection, "query_run": args.query_run,
              "positive_run": args.positive_run, "previous_pool": args.previous_pool, "bm25_run": args.bm25_run,
              "query_embeddings": embedding_files(args.query_embeddings),
              "corpus_embeddings": embedding_files(args.corpus_embeddings), "scores": args.scores}
    return StepOutput("mine", [Path(args.output), pool_stats_path(args.output)],
                      settings={k: getattr(args, k) for k in _SETTINGS}, inputs=inputs, shown=args.output)


def check_inputs(args: MineArguments, collection: Collection) -> None:
    """Refuse up front rankings naming a document the corpus lacks (FILE:LINE), which training would refuse later.

    Args:
        args: the driver's arguments.
        collection: the loaded collection.
    """
    known = collection.corpus.__contains__
    for path, keyed_by_document in ((args.query_run, False), (args.bm25_run, False), (args.positive_run, True)):
        if path is not None:
            check_run_documents(path, known, keyed_by_document=keyed_by_document)


def run(args: MineArguments) -> str:
    """Mine an episode's pool from the given rankings (and previous pool), with the filter's scores when asked.

    Args:
        args: the parsed flags.

    Returns:
        The pool file's path.
    """
    collection = load_collection(args.collection, args.split, passages=args.passages)
    check_inputs(args, collection)
    settings = {f.name: getattr(args, f.name) for f in fields(MiningConfig) if hasattr(args, f.name)}
    config = MiningConfig(**{**settings, "sample": args.sample or None})  # 0: every candidate
    scores = args.scores
    if args.query_embeddings or args.corpus_embeddings:
        if not (args.query_embeddings and args.corpus_embeddings):
            raise ValueError("--query_embeddings and --corpus_embeddings go together")
        if args.scores:
            raise ValueError("pass --scores or --query_embeddings/--corpus_embeddings, not both")
        scores = EmbeddingScorer(args.query_embeddings, args.corpus_embeddings)
    output = step_output(args, collection)
    if output.reusable(overwrite=args.overwrite):
        return args.output
    output.begin()
    mine_episode(collection, args.output, query_run=args.query_run, positive_run=args.positive_run,
                 previous_pool=args.previous_pool, bm25_run=args.bm25_run, config=config, overwrite=True,
                 scores=scores)
    stats = read_json(output.files[1])
    output.commit(counts={k: stats[k] for k in ("queries", "negatives") if k in stats})
    return args.output


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    (args,) = TeleArgumentParser(MineArguments).parse_args_into_dataclasses(args=argv)
    run(args)


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
