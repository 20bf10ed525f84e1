"""Encode a collection's corpus, queries, or its queries' positive passages to `.npy` + `.ids` files.

    python -m tevatron_tele.driver.encode --model_dir M --collection DATA --split train \
        --encode corpus --output RUN/episode-0/embeddings/corpus [--num_shards 4 --shard_index 0]
    torchrun --nproc_per_node 2 -m tevatron_tele.driver.encode ...   # each process takes a slice
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..arguments import FieldGroup, TeleArgumentParser
from ..backends import load_encoder
from ..data.collections import Collection, load_collection, load_corpus
from ..data.names import Amp, EmbeddingDtype, Pooling
from ..data.outputs import StepOutput
from ..data.token_cache import corpus_token_cache, query_token_cache
from ..retrieval.embeddings import ids_path, npy_path, read_ids, shard_prefix
from ..retrieval.encode import distributed_shard, encode_to_file, resolve_device
from ..utils import setup_logging

logger = logging.getLogger(__name__)


EncodeTarget = Literal["corpus", "queries", "positives"]


@dataclass
class EncodeArguments(FieldGroup):
    model_dir: str = field(metadata={"help": "saved encoder (tied, or query_model/ + passage_model/)"})
    collection: str = field(metadata={"help": "collection path (BEIR dir, MS MARCO dir, DPR json, Tevatron jsonl)"})
    output: str = field(metadata={"help": "output prefix: writes <output>.npy and <output>.ids (or shard files)"})
    encode: EncodeTarget = field(default="corpus", metadata={"help": "what to encode ('positives': the split's "
                                                                     "positive passages)"})
    split: str = field(default="train", metadata={"help": "which queries/qrels to read"})
    passages: str | None = field(default=None, metadata={"help": "DPR passages tsv (DPR json collections)"})
    cache_dir: str | None = field(default=None, metadata={"help": "token cache folder (default: beside output)"})
    q_max_len: int = field(default=32)
    p_max_len: int = field(default=128)
    batch_size: int = field(default=64)
    dtype: EmbeddingDtype = field(default="float16", metadata={"help": "how the vectors are stored"})
    amp: Amp | None = field(default=None, metadata={"help": "autocast on GPU"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:N or auto"})
    pooling: Pooling | None = field(default=None, metadata={"help": "override the model's pooling"})
    normalize: bool | None = field(default=None, metadata={"help": "override the model's normalisation"})
    shard_index: int = field(default=0)
    num_shards: int = field(default=1)
    overwrite: bool = field(default=False, metadata={"help": "replace an earlier output of this step made from "
                                                             "other settings or inputs (never anything else)"})


def _corpus_collection(collection: str, passages: str | None = None) -> Collection:
    """A Collection of only the corpus of `collection` (or of a DPR `passages` TSV), named as `load_collection` names
    it, so the corpus token cache is the one the other steps use."""
    path = Path(collection)
    if passages:
        corpus = load_corpus(passages, fmt="dpr" if str(passages).endswith(".tsv") else "auto")
    else:
        corpus = load_corpus(path)
    return Collection(path.name if path.is_dir() else path.stem, corpus, {}, {})


def step_output(args: EncodeArguments, collection, out_prefix: Path) -> StepOutput:
    """This shard's contract: the settings that change its vectors, the model folder and the collection files read.

    Args:
        args: the driver's arguments.
        collection: the loaded collection (its `source_files` are the inputs).
        out_prefix: the shard's prefix (`<output>[.shard-i-of-n]`).

    Returns:
        The StepOutput of `<out_prefix>.npy` + `.ids`.
    """
    is_query = args.encode == "queries"
    settings = {"encode": args.encode, "split": None if args.encode == "corpus" else args.split,
                "max_len": args.q_max_len if is_query else args.p_max_len, "dtype": args.dtype, "amp": args.amp,
                "pooling": args.pooling, "normalize": args.normalize, "shard": [args.shard_index, args.num_shards]}
    return StepOutput("encode", [npy_path(out_prefix), ids_path(out_prefix)], settings=settings, shown=out_prefix,
                      inputs={"model": args.model_dir, "collection": collection.source_paths() or None})


def run(args: EncodeArguments) -> Path:
    """Encode the corpus, the queries or the positive passages with a model (this process' shard under torchrun),
    reusing an output this step already made from the same model, inputs and settings.

    Args:
        args: the parsed flags.

    Returns:
        The written shard's prefix (`<prefix>.npy` / `.ids`).
    """
    device = resolve_device(args.device)
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    shard_index, num_shards = distributed_shard(args.shard_index, args.num_shards)
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path(args.output).parent / "token_cache"
    # the corpus needs neither queries nor qrels: a collection without the --split's files encodes its corpus
    collection = (_corpus_collection(args.collection, args.passages) if args.encode == "corpus"
                  else load_collection(args.collection, args.split, passages=args.passages))
    out_prefix = shard_prefix(args.output, shard_index, num_shards)
    output = step_output(args, collection, out_prefix)
    if output.reusable(overwrite=args.overwrite):
        return out_prefix
    model, tokenizer = load_encoder(args.model_dir, device, pooling=args.pooling, normalize=args.normalize)
    is_query = args.encode == "queries"
    ids = None
    if is_query:
        cache = query_token_cache(collection, tokenizer, args.q_max_len, cache_dir)
    else:
        cache = corpus_token_cache(collection, tokenizer, args.p_max_len, cache_dir)
        if args.encode == "positives":
            ids = sorted({d for q in collection.queries for d in collection.positives(q)})
            logger.info("%d distinct positive passages of %d queries", len(ids), len(collection.queries))
    output.begin()
    prefix = encode_to_file(cache, args.output, is_query=is_query, ids=ids, shard_index=shard_index,
                            num_shards=num_shards, max_len=args.q_max_len if is_query else args.p_max_len,
                            batch_size=args.batch_size, dtype=args.dtype, amp=args.amp,
                            model=model, tokenizer=tokenizer, overwrite=True)
    output.commit(counts={"vectors": len(read_ids(prefix))})
    return prefix


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    (args,) = TeleArgumentParser(EncodeArguments).parse_args_into_dataclasses(args=argv)
    run(args)


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
