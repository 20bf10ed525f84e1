"""The effectiveness study's report: summary.json and summary.md over every profile, and their export.

- markdown(): one profile's summary (effectiveness_summary.summarize()) as markdown tables;
- write_summary(): RESULTS/summary.json and RESULTS/summary.md over every profile folder;
- export(): those two and results.tar.gz (the small result files only) into another folder.

Imports effectiveness_plan.py and effectiveness_summary.py.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from effectiveness_plan import MAIN, METRICS, PROFILES, TRANSFER, resolve_paths
from effectiveness_summary import eval_key, final_episode, metric, stage_times, summarize

from tevatron_tele.evaluation.report import format_value as fmt
from tevatron_tele.utils import read_json, write_json


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
                  + ("" if summary["probe_shared"] else
                     f" (WARNING: the probes of {', '.join(summary.get('probe_differs') or ['some runs'])} differ "
                     "from the others': their pools lack training queries whose negatives were all filtered out)")
                  + ". "
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

