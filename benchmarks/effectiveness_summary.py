"""The effectiveness study's summary: what the finished run folders of one profile say, and its statistics.

- read_run_folder(): one run's per-episode metrics, forgetting, timings, pool statistics and sharing;
- stage_times(), metric(), per_query_scores(): a run's wall time per stage, one figure, per-query values;
- headline_stats(): ANCE vs Tele over the seeds (mean, SD, paired bootstrap over queries); setting_pairs(): Tele -
  ANCE under every other setting both ran; variant_rows(): each `beyond` run against plain Tele and ANCE;
- combined_analysis(): one forgetting analysis of all finished runs on one probe (cached; optional);
- summarize(): all of the above as one dict, which effectiveness_report.py writes out.

Imports effectiveness_plan.py only.
"""
from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from pathlib import Path

from effectiveness_plan import COMMON, MAIN, METRICS, PROFILES, TRANSFER, beyond_experiments

from tevatron_tele.data.pools import pool_stats_path
from tevatron_tele.data.run_folder import RunLayout
from tevatron_tele.evaluation.verdict import paired_bootstrap
from tevatron_tele.retrieval.encode import resolve_device
from tevatron_tele.utils import read_json, write_json


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

    layout = RunLayout(run_dir)
    manifest = read_json(layout.manifest_path)
    out = {"name": run_dir.name, "config": manifest["config"], "timings": manifest.get("timings", {}),
           "versions": manifest.get("versions", {}), "eval": {}, "finished_episodes": [],
           "shared": read_json(run_dir / "shared.json") if (run_dir / "shared.json").exists() else []}
    for i in layout.episodes():
        if layout.eval(i).exists():
            out["eval"][i] = read_json(layout.eval(i))
        transfer = layout.episode(i) / "transfer.json"  # written by effectiveness.py, beside eval.json
        if transfer.exists():
            out["eval"].setdefault(i, {}).update(read_json(transfer))
        if layout.done(i).exists():
            out["finished_episodes"].append(i)
        log = layout.model(i) / "train_log.json"
        if log.exists():
            out.setdefault("train_steps", {})[i] = read_json(log).get("global_step")
        stats = pool_stats_path(layout.pool(i))
        if stats.exists():
            out.setdefault("pool_stats", {})[i] = read_json(stats)
    analysis = layout.report_dir / "analysis.json"
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
        per_seed = {r: {s: per_query_scores(RunLayout(paths["runs"] / f"{r}-s{s}").ranking(last, trec), collection)
                        for s in paired} for r in ("tele", "ance")}
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


def paired_ndcg(paths: dict, run: str, base: str, episode: int, trec: str, collection,
                memo: dict | None = None) -> dict:
    """Paired bootstrap of `run` - `base` per-query nDCG@10 in one ranking file of an episode (the per-query values
    of a run are computed once per `memo`, so a base run compared with several others is scored once)."""
    memo = {} if memo is None else memo
    per_query = {}
    for r in (run, base):
        key = (r, episode, trec)
        if key not in memo:
            memo[key] = per_query_scores(RunLayout(paths["runs"] / r).ranking(episode, trec), collection)["nDCG@10"]
        per_query[r] = memo[key]
    return paired_bootstrap([per_query[run][q] - per_query[base][q] for q in sorted(per_query[run])])


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
        tele, ance = metric(runs[name], n, MAIN, "nDCG@10"), metric(runs[partner], n, MAIN, "nDCG@10")
        out.append({"setting": setting, "tele": tele, "ance": ance, "difference": tele - ance,
                    "bootstrap": paired_ndcg(paths, name, partner, n, "test", collection),
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
    memo: dict = {}
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
                row["against"].setdefault(base, {})[name] = {
                    "difference": row[name] - metric(runs[base], n, name, "nDCG@10"),
                    "bootstrap": paired_ndcg(paths, exp.name, base, n, trec, collections[name], memo)}
        out.append(row)
    return out


def finished_runs(paths: dict) -> list[Path]:
    """Run folders whose last episode is done (the zero-shot run has no trained episode to analyse)."""
    out = []
    for run_dir in sorted(paths["runs"].glob("*")):
        layout = RunLayout(run_dir)
        if not layout.manifest_path.exists() or run_dir.name == "zero-shot":
            continue
        n = read_json(layout.manifest_path)["config"]["num_episodes"]
        if layout.done(n).exists():
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
    device = resolve_device(settings.get("device", "auto"))
    result = analyze_runs(runs, max_queries=settings.get("analysis_max_queries"),
                          cache_dir=paths["token_cache"] / "analysis", device=device, progress=False)
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_report(result, out)
    write_json(out / "runs.json", key)
    return result


def probe_outliers(probes: dict[str, str]) -> list[str]:
    """The runs whose probe is not the one most runs share. A run whose pools lack some training queries (a
    filter that removed all their negatives) has a smaller probe: the analysis takes positives from the pools."""
    if not probes:
        return []
    counts = Counter(probes.values())
    common = counts.most_common(1)[0][0]
    return sorted(n for n, p in probes.items() if p != common)


def summarize(paths: dict, profile_name: str, seeds: list[int], analyze: bool = False) -> dict:
    runs = {}
    for run_dir in sorted(paths["runs"].glob("*")):
        if RunLayout(run_dir).manifest_path.exists():
            runs[run_dir.name] = read_run_folder(run_dir)
    wall = read_json(paths["root"] / "wall_times.json") if (paths["root"] / "wall_times.json").exists() else {}
    bm25 = read_json(paths["results"] / "bm25" / "eval.json") if (paths["results"] / "bm25" / "eval.json").exists() \
        else None
    # each analysis names the run it built the probe from; the probe itself must be the same everywhere
    probes = {n: json.dumps({k: v for k, v in r["probe"].items() if k != "from"}, sort_keys=True)
              for n, r in runs.items() if r.get("probe")}
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
            # the probe each run was measured on: the shared one, less the queries its own pools lack
            probes = {run["name"]: json.dumps({k: run["probe"][k] for k in ("queries", "pairs")})
                      for run in combined["runs"]}
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
        "probe_shared": len(set(probes.values())) <= 1,
        "probe_differs": probe_outliers(probes),
    }
    return summary

