"""Which settings the runner's defaults should have: ablation rows through the episode runner, beside the one-shot
recipe (`one_shot.py`), on a collection with many judged positives per query (NFCorpus) and one with about one
(SciFact).

    python benchmarks/defaults_study.py run --collection ../shared/data/nfcorpus --eval_split dev \
        --out benchmarks/results/defaults/nfcorpus --rows ance-top30 ance-top30-best95 --seeds 13
    python benchmarks/defaults_study.py summary --out benchmarks/results/defaults/nfcorpus \
        --one_shot benchmarks/results/defaults/one_shot/nfcorpus

Every row starts from all-MiniLM-L6-v2 (mean pooling, cosine, temperature 0.05, lr 2e-5, 8 queries x (1 + 3)
passages, 64 / 128 tokens) and is evaluated on `--eval_split` after each episode; rows differ in the settings of
`ROWS`. Runs resume (the runner's own resumption); the base model's encodings are shared (--base_cache_dir).
`summary` reads the run folders back: the figure of each row's kept episode (best.json; the last episode
without a dev split), its paired bootstrap against the start and against the one-shot recipe of the same seed,
and its cost (training steps, encodings, the runner's step timings), and the rows of `PAIRS` against each other
(same seed), into OUT/summary.json and OUT/summary.md.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
from machine import machine_info
from one_shot import METRIC, minilm_path

from tevatron_tele.data.collections import load_collection
from tevatron_tele.data.run_folder import RunLayout
from tevatron_tele.data.trec import read_run
from tevatron_tele.evaluation.metrics import per_query_values
from tevatron_tele.evaluation.verdict import compare
from tevatron_tele.runner.workspace import RunFolder
from tevatron_tele.utils import read_json, write_json

# The settings every row shares (the README recipe's model, loss and lengths).
COMMON = {"pooling": "mean", "normalize": True, "temperature": 0.05, "learning_rate": 2e-5,
          "per_device_train_batch_size": 8, "train_n_passages": 4, "q_max_len": 64, "p_max_len": 128,
          "analyze": False, "baselines": "none", "progress": False,
          # the paper's mining (no filter, every positive), which the rows below change; spelled out since the
          # runner's defaults are now this study's choice
          "max_negative_ratio": None, "filter_positive": "weakest", "train_positives": "all"}
# about 64 steps over 2,590 NFCorpus training queries when every query keeps a negative (the one-shot recipe
# trains about 60)
SHORT = {"num_episodes": 1, "num_train_epochs": 0.2}
BEST95 = {"max_negative_ratio": 0.95, "filter_positive": "best"}
ROWS: dict[str, dict] = {
    # one episode of ANN negatives from the start model's top 30, 3 per query: the one-shot recipe's candidates
    "ance-top30": {**SHORT, "negatives": "ann", "depth": 30, "sample": 3},
    "ance-top30-weakest95": {**SHORT, "negatives": "ann", "depth": 30, "sample": 3, "max_negative_ratio": 0.95},
    "ance-top30-best95": {**SHORT, "negatives": "ann", "depth": 30, "sample": 3, **BEST95},
    # each query trains on its best-scored positive only (the one-shot miner keeps just the queries whose drawn
    # positive scores well above their candidates)
    "ance-top30-best95-bestpos": {**SHORT, "negatives": "ann", "depth": 30, "sample": 3, **BEST95,
                                  "train_positives": "best"},
    # lookahead too, each query on its best-scored positive only
    "tele1-top200-best95-bestpos": {**SHORT, "negatives": "tele", "depth": 200, "sample": 30, **BEST95,
                                    "train_positives": "best"},
    # other queries' judged positives masked out of the in-batch negatives (NFCorpus queries share many)
    "ance-top30-best95-mask": {**SHORT, "negatives": "ann", "depth": 30, "sample": 3, **BEST95,
                               "mask_batch_positives": True},
    # a sample of the top 200 (the paper's depth) instead of the top 30
    "ance-top200-best95": {**SHORT, "negatives": "ann", "depth": 200, "sample": 30, **BEST95},
    "ance-top200-best95-bestpos": {**SHORT, "negatives": "ann", "depth": 200, "sample": 30, **BEST95,
                                   "train_positives": "best"},
    "ance-top200": {**SHORT, "negatives": "ann", "depth": 200, "sample": 30},
    # lookahead under the same filter, one episode
    "tele1-top200-best95": {**SHORT, "negatives": "tele", "depth": 200, "sample": 30, **BEST95},
    # three episodes (quick refresh 20 steps, the last the same short schedule)
    "tele3-top200-best95": {"num_episodes": 3, "refresh_steps": 20, "num_train_epochs": 0.2, "negatives": "tele",
                            "depth": 200, "sample": 30, **BEST95},
    "ance3-top200-best95": {"num_episodes": 3, "refresh_steps": 20, "num_train_epochs": 0.2, "negatives": "ann",
                            "depth": 200, "sample": 30, **BEST95},
    # the README recipe before this study (3 episodes of 40 / 40 / 2 epochs, no filter)
    "tele3-readme": {"num_episodes": 3, "refresh_steps": 40, "num_train_epochs": 2, "negatives": "tele",
                     "depth": 200, "sample": 30},
    # the same with the filter and training positive the short rows chose
    "tele3-readme-best95-bestpos": {"num_episodes": 3, "refresh_steps": 40, "num_train_epochs": 2,
                                    "negatives": "tele", "depth": 200, "sample": 30, **BEST95,
                                    "train_positives": "best"},
    # its ANCE twin (no lookahead, no momentum): what Tele adds on the same schedule and mining
    "ance3-readme-best95-bestpos": {"num_episodes": 3, "refresh_steps": 40, "num_train_epochs": 2,
                                    "negatives": "ann", "depth": 200, "sample": 30, **BEST95,
                                    "train_positives": "best"},
    # BM25 negatives on the same defaults, one episode of the README recipe's 726 steps (2.25 epochs of 2,590
    # NFCorpus queries)
    "bm25-best95-bestpos": {"num_episodes": 1, "num_train_epochs": 2.25, "negatives": "bm25", "depth": 200,
                            "sample": 30, **BEST95, "train_positives": "best"},
}


# Rows compared head to head (same seed, paired bootstrap over the evaluated queries): what one setting adds.
PAIRS = [("ance-top30-best95", "ance-top30"), ("ance-top30-best95-bestpos", "ance-top30-best95"),
         ("tele1-top200-best95-bestpos", "ance-top30-best95-bestpos"),
         ("tele1-top200-best95-bestpos", "ance-top200-best95-bestpos"),
         ("tele3-readme-best95-bestpos", "ance3-readme-best95-bestpos"),
         ("tele3-readme-best95-bestpos", "bm25-best95-bestpos"),
         ("tele3-readme-best95-bestpos", "tele1-top200-best95-bestpos")]


def _flags(settings: dict) -> list[str]:
    out = []
    for key, value in settings.items():
        out += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return out


def run_rows(args: argparse.Namespace) -> None:
    """Run (or resume) each asked row and seed through `python -m tevatron_tele.driver.episodes`."""
    out = Path(args.out)
    for name in args.rows:
        if name not in ROWS:
            raise SystemExit(f"unknown row '{name}'; rows: {', '.join(ROWS)}")
    for seed in args.seeds:
        for name in args.rows:
            run_dir = out / "runs" / f"{name}-s{seed}"
            if RunLayout(run_dir).best_json.exists():
                print(f"{run_dir}: done", flush=True)
                continue
            settings = {**COMMON, **ROWS[name], "seed": seed, "output_dir": run_dir,
                        "model_name_or_path": args.model or minilm_path(), "collection": args.collection,
                        "eval_split": args.eval_split, "token_cache_dir": out / "token_cache",
                        "base_cache_dir": out / "base"}
            if args.dev_from_train:
                settings["dev_from_train"] = args.dev_from_train
            if args.num_train_epochs is not None:
                settings["num_train_epochs"] = args.num_train_epochs
            if args.device != "cpu":
                settings.update(device=args.device, search_backend="torch")
            log = out / "logs" / f"{name}-s{seed}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            print(f"{run_dir}: running (log {log})", flush=True)
            with open(log, "w", encoding="utf-8") as f:
                subprocess.run([sys.executable, "-m", "tevatron_tele.driver.episodes", *_flags(settings)],
                               stdout=f, stderr=subprocess.STDOUT, check=True)


def _row_cost(folder: RunFolder) -> dict:
    """Training steps (each episode's train_log.json), encodings and seconds (the manifest's step timings)."""
    timings = read_json(folder.manifest_path).get("timings", {})
    steps = []
    for model_dir in (folder.model(i) for i in folder.episodes() if folder.model(i).exists()):
        log = model_dir / "train_log.json"
        steps.append(read_json(log)["global_step"] if log.exists() else None)
    return {"steps": steps, "encodings": sum(1 for k in timings if "/encode-" in k),
            "seconds": round(sum(timings.values()), 1)}


def _kept_episode(folder: RunFolder) -> int:
    best = read_json(folder.best_json)
    return int(best["selected"])


def summarize(args: argparse.Namespace) -> dict:
    """Every finished row and seed against the start and the one-shot recipe, and the `PAIRS` head to head
    (per-query, paired bootstrap)."""
    out = Path(args.out)
    rows: dict[str, dict] = {}
    qrels_cache: dict[str, dict] = {}
    per_query: dict[tuple[str, str], dict[str, float]] = {}
    for run_dir in sorted((out / "runs").glob("*-s*")):
        if not RunLayout(run_dir).best_json.exists():
            continue
        name, seed = run_dir.name.rsplit("-s", 1)
        folder = RunFolder(run_dir)
        manifest = read_json(folder.manifest_path)["config"]
        key = f"{manifest['collection']}:{manifest['eval_split']}"
        if key not in qrels_cache:
            qrels_cache[key] = load_collection(manifest["collection"], split=manifest["eval_split"]).qrels
        qrels = qrels_cache[key]
        kept = _kept_episode(folder)
        values = per_query_values(read_run(folder.ranking(kept, "test")), qrels, METRIC)
        start = per_query_values(read_run(folder.ranking(0, "test")), qrels, METRIC)
        entry = {"seed": int(seed), "kept_episode": kept, METRIC: float(np.mean(list(values.values()))),
                 "start": float(np.mean(list(start.values()))), "vs_start": compare(values, start, int(seed)),
                 "cost": _row_cost(folder)}
        one_shot = Path(args.one_shot) / f"seed-{seed}" / "result.json" if args.one_shot else None
        if one_shot is not None and one_shot.exists():
            entry["vs_one_shot"] = compare(values, read_json(one_shot)["per_query"], int(seed))
        # the settings the run recorded (a row's, with --num_train_epochs where it replaced the row's epochs)
        settings = {k: manifest.get(k) for k in ROWS.get(name, {})}
        rows.setdefault(name, {"settings": settings, "seeds": {}})["seeds"][seed] = entry
        per_query[(name, seed)] = values
    pairs = [{"row": a, "against": b, "seed": int(seed), "difference": compare(per_query[(a, seed)],
                                                                               per_query[(b, seed)], int(seed))}
             for a, b in PAIRS for (name, seed) in sorted(per_query) if name == a and (b, seed) in per_query]
    summary = {"metric": METRIC, "rows": rows, "pairs": pairs, "one_shot": _one_shot_rows(args.one_shot),
               "machine": machine_info(args.device)}
    write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(_table(summary), encoding="utf-8")
    print(_table(summary))
    return summary


def _one_shot_rows(one_shot: str | None) -> dict:
    if not one_shot:
        return {}
    found = {}
    for path in sorted(Path(one_shot).glob("seed-*/result.json")):
        result = read_json(path)
        start = read_json(Path(one_shot) / "start.json")
        found[str(result["seed"])] = {METRIC: result["metrics"][METRIC], "start": start["metrics"][METRIC],
                                      "vs_start": compare(result["per_query"], start["per_query"], result["seed"]),
                                      "queries_kept": result["mined_rows"], "steps": result["steps"],
                                      "wall_s": result["cost"]["wall_s"]}
    return found


def _interval(result: dict | None) -> str:
    if not result:
        return "-"
    lo, hi = result["ci95"]
    return f"{result['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _table(summary: dict) -> str:
    lines = [f"| row | seed | kept episode | {METRIC} | vs start | vs one-shot | steps | encodings | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for seed, r in summary["one_shot"].items():
        lines.append(f"| one-shot (sentence-transformers) | {seed} | - | {r[METRIC]:.4f} | {_interval(r['vs_start'])} "
                     f"| - | {r['steps']} ({r['queries_kept']} queries) | 1 + 1 | {r['wall_s']:.0f} |")
    for name, row in summary["rows"].items():
        for seed, e in sorted(row["seeds"].items()):
            c = e["cost"]
            steps = "+".join(str(s) for s in c["steps"])
            lines.append(f"| {name} | {seed} | {e['kept_episode']} | {e[METRIC]:.4f} | {_interval(e['vs_start'])} | "
                         f"{_interval(e.get('vs_one_shot'))} | {steps} | {c['encodings']} | {c['seconds']:.0f} |")
    if summary.get("pairs"):
        lines += ["", f"| row | against | seed | {METRIC} difference |", "|---|---|---|---|"]
        lines += [f"| {p['row']} | {p['against']} | {p['seed']} | {_interval(p['difference'])} |"
                  for p in summary["pairs"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("run", "summary"))
    p.add_argument("--out", required=True, help="study folder (runs/, logs/, summary.json, summary.md)")
    p.add_argument("--collection", help="collection folder (run)")
    p.add_argument("--eval_split", default="dev", help="split evaluated after every episode (run)")
    p.add_argument("--dev_from_train", type=int, default=0, help="training queries held out to choose on (run)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), help=f"rows to run: {', '.join(ROWS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[13])
    p.add_argument("--model", default=None, help="start model (default: all-MiniLM-L6-v2 from its wheel)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (run)")
    p.add_argument("--num_train_epochs", type=float, default=None,
                   help="replaces every row's epochs (run; e.g. 0.8 on SciFact, about the one-shot recipe's 80 steps)")
    p.add_argument("--one_shot", default=None, help="one_shot.py's result folder of the same collection (summary)")
    args = p.parse_args(argv)
    if args.command == "run":
        if not args.collection:
            raise SystemExit("run needs --collection")
        run_rows(args)
    else:
        summarize(args)


if __name__ == "__main__":
    main()
