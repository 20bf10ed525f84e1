"""Synthetic MS MARCO-shaped inputs for benchmarks/scale.py, all seeded and reused when present.

- BEIR folders (corpus.jsonl, queries.jsonl, qrels/train.tsv): passages of about 56 words (log-normal,
  4-250), drawn Zipf-like from the whole words of all-MiniLM-L6-v2's vocabulary plus one compound (two
  of them run together) per seven, a period after about one word in 14 (about 1.3 tokens per word, as
  in MS MARCO; the recipe of benchmarks/token_cache.py); training queries of about 6 words in MS
  MARCO's proportion (502,939 per 8,841,823 passages), 1.06 positives each. Passages are generated in
  seeded blocks, so a smaller folder is a prefix of a larger one; all missing sizes are written in one pass.
- Random float16 embeddings (768-d) of the corpus and the training queries, in the format of
  tevatron_tele.retrieval.embeddings (`<prefix>.ids` + `<prefix>.npy`).
- Random rankings (TREC) of the training queries and of their positives (top-`depth` distinct
  passages), and an episode-1 pool (30 "ann" + 30 "lookahead" random negatives per query).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

MSMARCO_PASSAGES = 8_841_823
MSMARCO_TRAIN_QUERIES = 502_939
MSMARCO_TRAIN_QRELS = 532_761
BLOCK = 20_000
VERSION = 1


def train_queries(n_passages: int) -> int:
    return max(1, round(n_passages * MSMARCO_TRAIN_QUERIES / MSMARCO_PASSAGES))


def _done(folder: Path, params: dict) -> bool:
    try:
        return json.loads((folder / "done.json").read_text()) == params
    except (OSError, ValueError):
        return False


def _mark(folder: Path, params: dict) -> None:
    (folder / "done.json").write_text(json.dumps(params) + "\n")


def _words(model_dir: Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    vocab = [w for w in (Path(model_dir) / "vocab.txt").read_text(encoding="utf-8").split("\n")
             if w.isascii() and w.isalpha() and len(w) > 1]
    rng = np.random.default_rng([seed, 9])
    a, b = rng.integers(0, len(vocab), (2, len(vocab) // 7))
    words = vocab + [vocab[i] + vocab[j] for i, j in zip(a, b)]
    rng.shuffle(words)
    cdf = np.cumsum(1.0 / np.arange(1, len(words) + 1) ** 0.9)
    return np.array(words, dtype=object), cdf / cdf[-1]


def collection_params(n: int, seed: int) -> dict:
    return {"version": VERSION, "passages": n, "train_queries": train_queries(n), "seed": seed}


def collection_ready(folder: Path, n: int, seed: int) -> bool:
    return _done(folder, collection_params(n, seed))


def generate_collections(folders: dict[int, Path], model_dir: Path, seed: int = 0) -> dict:
    """Write the BEIR folder of each size in `folders` (one stream of passages, each folder a prefix)."""
    started = time.perf_counter()
    words, cdf = _words(model_dir, seed)
    sizes = sorted(folders)
    tmp = {n: folders[n].with_name(folders[n].name + ".partial") for n in sizes}
    for n in sizes:
        shutil.rmtree(tmp[n], ignore_errors=True)
        (tmp[n] / "qrels").mkdir(parents=True)
    files = {n: open(tmp[n] / "corpus.jsonl", "w", encoding="utf-8") for n in sizes}
    total_words = 0
    try:
        for start in range(0, sizes[-1], BLOCK):
            rng = np.random.default_rng([seed, 0, start // BLOCK])
            m = min(BLOCK, sizes[-1] - start)
            lengths = np.clip(np.rint(rng.lognormal(np.log(56) - 0.45 ** 2 / 2, 0.45, m)), 4, 250).astype(np.int64)
            picked = words[np.searchsorted(cdf, rng.random(int(lengths.sum())))].tolist()
            for j in np.flatnonzero(rng.random(len(picked)) < 1 / 14):
                picked[j] += "."
            cut = np.concatenate([[0], np.cumsum(lengths)]).tolist()
            lines = [f'{{"_id": "{start + i}", "title": "", "text": "{" ".join(picked[cut[i]:cut[i + 1]])}"}}\n'
                     for i in range(m)]
            total_words += int(lengths.sum())
            for n in sizes:
                if start < n:
                    files[n].write("".join(lines[:n - start]))
    finally:
        for f in files.values():
            f.close()
    for n in sizes:
        q = train_queries(n)
        with open(tmp[n] / "queries.jsonl", "w", encoding="utf-8") as f:
            for qs in range(0, q, BLOCK):
                rng = np.random.default_rng([seed, 1, qs // BLOCK])
                m = min(BLOCK, q - qs)
                lengths = np.clip(2 + rng.poisson(4, m), 1, 20)
                picked = words[np.searchsorted(cdf, rng.random(int(lengths.sum())))].tolist()
                cut = np.concatenate([[0], np.cumsum(lengths)]).tolist()
                f.write("".join(f'{{"_id": "q{qs + i}", "text": "{" ".join(picked[cut[i]:cut[i + 1]])}"}}\n'
                                for i in range(m)))
        rng = np.random.default_rng([seed, 2, n])
        first = rng.integers(0, n, q)
        second = (first + 1 + rng.integers(0, max(n - 1, 1), q)) % n
        two = rng.random(q) < MSMARCO_TRAIN_QRELS / MSMARCO_TRAIN_QUERIES - 1
        with open(tmp[n] / "qrels" / "train.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            f.writelines(f"q{i}\t{first[i]}\t1\n" + (f"q{i}\t{second[i]}\t1\n" if two[i] else "") for i in range(q))
        _mark(tmp[n], collection_params(n, seed))
        shutil.rmtree(folders[n], ignore_errors=True)
        os.replace(tmp[n], folders[n])
    return {"seconds": round(time.perf_counter() - started, 1), "sizes": sizes,
            "mean_words": round(total_words / sizes[-1], 1),
            "corpus_bytes": {n: (folders[n] / "corpus.jsonl").stat().st_size for n in sizes}}


def read_split(folder: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Queries and positives straight from the files this module wrote (no corpus load)."""
    queries = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            queries[obj["_id"]] = obj["text"]
    positives: dict[str, list[str]] = {}
    with open(folder / "qrels" / "train.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            q, d, _ = line.split("\t")
            positives.setdefault(q, []).append(d)
    return queries, positives


# ---------------------------------------------------------------- vectors

def vectors_params(n: int, dim: int, seed: int) -> dict:
    return {"version": VERSION, "passages": n, "queries": train_queries(n), "dim": dim, "seed": seed}


def _write_vectors(prefix: Path, ids: list[str], dim: int, seed: list[int], rows: int = 50_000) -> None:
    from tevatron_tele.retrieval.embeddings import ids_path, npy_path

    ids_path(prefix).write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    tmp = prefix.with_name(prefix.name + ".partial.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(ids), dim))
    for r in range(0, len(ids), rows):
        rng = np.random.default_rng([*seed, r // rows])
        out[r:r + rows] = rng.standard_normal((min(rows, len(ids) - r), dim), dtype=np.float32)
    out.flush()
    del out
    os.replace(tmp, npy_path(prefix))


def write_vectors(folder: Path, n: int, dim: int, seed: int) -> dict:
    """Random float16 embeddings: `corpus` (ids 0..n-1, as the collection's) and `queries` (q0..)."""
    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _write_vectors(folder / "corpus", [str(i) for i in range(n)], dim, [seed, 3])
    _write_vectors(folder / "queries", [f"q{i}" for i in range(train_queries(n))], dim, [seed, 4])
    _mark(folder, vectors_params(n, dim, seed))
    return {"seconds": round(time.perf_counter() - started, 1)}


def vectors_ready(folder: Path, n: int, dim: int, seed: int) -> bool:
    return _done(folder, vectors_params(n, dim, seed))


# ---------------------------------------------------------------- rankings and the episode-1 pool

def mining_params(n: int, depth: int, seed: int) -> dict:
    return {"version": VERSION, "passages": n, "depth": depth, "seed": seed}


def mining_ready(folder: Path, n: int, depth: int, seed: int) -> bool:
    return _done(folder, mining_params(n, depth, seed))


def _write_run(path: Path, keys: list[str], n: int, depth: int, rng: np.random.Generator) -> None:
    depth = min(depth, n)
    tail = [f" {r} {s:.6f} dense\n" for r, s in zip(range(1, depth + 1), np.linspace(0.9, 0.1, depth))]
    with open(path, "w", encoding="utf-8") as f:
        for k in keys:
            docs = rng.choice(n, depth, replace=False, shuffle=False).tolist()
            f.write("".join(f"{k} Q0 {d}{t}" for d, t in zip(docs, tail)))


def write_mining_inputs(beir: Path, folder: Path, pool1: Path, n: int, depth: int, seed: int) -> dict:
    """ANN run of the training queries, lookahead run of their positives, episode-1 pool (30 + 30)."""
    from tevatron_tele.data.pools import PoolEntry, write_pool

    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    queries, positives = read_split(beir)
    rng = np.random.default_rng([seed, 5, n])
    _write_run(folder / "queries.trec", list(queries), n, depth, rng)
    _write_run(folder / "positives.trec", sorted({d for ds in positives.values() for d in ds}, key=int), n, depth, rng)
    entries = []
    for q, text in queries.items():
        pos = set(positives.get(q, ()))
        drawn = [str(d) for d in rng.choice(n, min(n, 64), replace=False, shuffle=False).tolist()]
        negs = [d for d in drawn if d not in pos][:60]
        entries.append(PoolEntry(q, text, positives.get(q, []), negs, {"ann": negs[:30], "lookahead": negs[30:]}))
    pool1.parent.mkdir(parents=True, exist_ok=True)
    write_pool(pool1, entries, {"synthetic": "random negatives (benchmarks/scale_data.py)"})
    _mark(folder, mining_params(n, depth, seed))
    return {"seconds": round(time.perf_counter() - started, 1)}
