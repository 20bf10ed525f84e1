"""Build episode i's negative pool from rankings: ANN, lookahead, momentum and (optionally) BM25.

    python -m tevatron_tele.driver.mine --collection DATA --split train --output RUN/episode-2/pool.jsonl \
        --query_run RUN/episode-1/rankings/queries.trec --positive_run RUN/episode-1/rankings/positives.trec \
        --previous_pool RUN/episode-1/pool.jsonl [--bm25_run bm25.trec] --depth 200 --sample 30 --seed 0
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from ..utils import setup_logging

logger = logging.getLogger(__name__)


@dataclass
class MineArguments:
    collection: str = field(metadata={"help": "collection path"})
    output: str = field(metadata={"help": "pool.jsonl to write (pool.stats.json goes beside it)"})
    split: str = field(default="train")
    passages: str | None = field(default=None, metadata={"help": "DPR passages tsv (DPR json collections)"})
    query_run: str | None = field(default=None, metadata={"help": "TREC run of the queries (ANN negatives)"})
    positive_run: str | None = field(default=None, metadata={"help": "TREC run keyed by positive docid (lookahead)"})
    previous_pool: str | None = field(default=None, metadata={"help": "previous episode's pool.jsonl (momentum)"})
    bm25_run: str | None = field(default=None, metadata={"help": "TREC BM25 run of the queries (BM25 negatives)"})
    depth: int = field(default=200, metadata={"help": "ranks looked at per ranking"})
    sample: int = field(default=30, metadata={"help": "negatives sampled per source per query (0: all)"})
    seed: int = field(default=0)
    all_positives: bool = field(default=False, metadata={"help": "lookahead from every positive, not the first"})
    dedupe: bool = field(default=False, metadata={"help": "drop repeated negatives across sources"})
    overwrite: bool = field(default=False)


def run(args: MineArguments) -> str:
    from ..data.collections import load_collection
    from ..mining.tele import MiningConfig, mine_episode

    collection = load_collection(args.collection, args.split, passages=args.passages)
    config = MiningConfig(depth=args.depth, sample=args.sample or None, seed=args.seed,
                          all_positives=args.all_positives, dedupe=args.dedupe)
    return str(mine_episode(collection, args.output, query_run=args.query_run, positive_run=args.positive_run,
                            previous_pool=args.previous_pool, bm25_run=args.bm25_run, config=config,
                            overwrite=args.overwrite))


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    (args,) = HfArgumentParser(MineArguments).parse_args_into_dataclasses(args=argv)
    run(args)


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
