"""benchmarks/scale.py's growth fits, extrapolation to MS MARCO's size, target checks and printed table."""
from __future__ import annotations

import numpy as np
import scale_data as sd

TIME_KEY = {"search": "seconds_per_1000_queries", "dataset": "startup_seconds"}  # else "seconds"
TOLERANCE = 1.1  # an exponent up to this counts as linear
FULL = sd.MSMARCO_PASSAGES


def fit(sizes: list[int], values: list[float], offset: float = 0.0) -> dict | None:
    """Power law and straight line through (sizes, values); at FULL passages both plus `offset` (a baseline)."""
    pts = [(s, v) for s, v in zip(sizes, values) if v is not None and v > 0]
    if len({s for s, _ in pts}) < 2:
        return None
    x, y = np.array([s for s, _ in pts], float), np.array([v for _, v in pts], float)
    b, c = np.polyfit(np.log(x), np.log(y), 1)
    slope, icpt = np.polyfit(x, y, 1)
    return {"exponent": round(float(b), 3), "linear_or_better": bool(b <= TOLERANCE), "sizes": [int(s) for s in x],
            "at_full": {"passages": FULL, "power_law": round(float(offset + np.exp(c) * FULL ** b), 3),
                        "linear": round(float(offset + icpt + slope * FULL), 3), "extrapolated": True}}


def fits(stages: dict) -> dict:
    out = {}
    for stage, by_size in stages.items():
        rows = sorted((int(n), r) for n, r in by_size.items() if "error" not in r)
        sizes = [n for n, _ in rows]
        key = TIME_KEY.get(stage, "seconds")
        m = [r["memory"] for _, r in rows]
        base_anon = float(np.mean([x["baseline_anon_mb"] for x in m])) if m else 0.0
        base_rss = float(np.mean([x["phases"]["imports"]["hwm_mb"] for x in m])) if m else 0.0
        f = {"time_key": key, "time": fit(sizes, [r.get(key) for _, r in rows]),
             "peak_anon_mb": fit(sizes, [max(x["peak_anon_mb"] - x["baseline_anon_mb"], 1.0) for x in m], base_anon),
             "peak_rss_mb": fit(sizes, [max(x["peak_rss_mb"] - x["phases"]["imports"]["hwm_mb"], 1.0) for x in m],
                                base_rss),
             "memory_note": "fitted: peak minus the post-import baseline (exponent = growth); at_full adds the "
                            "mean baseline back"}
        if stage == "dataset":
            f["ms_per_example"] = fit(sizes, [r["ms_per_example"] for _, r in rows])
        if stage == "search" and f["time"]:
            per = f["time"]["at_full"]["power_law"] / 1000
            f["all_queries_and_positives_at_full_seconds"] = {
                "power_law": round(per * (sd.MSMARCO_TRAIN_QUERIES + sd.MSMARCO_TRAIN_QRELS)), "extrapolated": True}
        out[stage] = f
    return out


def targets(stages: dict, budget_mb: float) -> dict:
    sizes = sorted({int(n) for s in stages.values() for n in s})
    if not sizes:
        return {}
    top = max(sizes)
    mem = {s: r[str(top)]["memory"]["peak_anon_mb"] for s, r in stages.items()
           if str(top) in r and "error" not in r[str(top)]}
    reopen = {n: r["seconds"] for n, r in stages.get("reopen", {}).items() if "error" not in r}
    build = stages.get("build", {}).get(str(top), {})
    return {"at_passages": top, "is_2M": top >= 2_000_000, "budget_mb": budget_mb,
            "memory_compared": "peak_anon_mb (RssAnon sampled every 20 ms: memory besides mapped files)",
            "peak_anon_mb": mem, "memory_ok": {s: v <= budget_mb for s, v in mem.items()},
            "reopen_seconds": reopen, "reopen_ok": bool(reopen) and all(v <= 1.0 for v in reopen.values()),
            "build_ratio": build.get("ratio_to_tokenizer"),
            "build_ok": bool(build.get("ratio_to_tokenizer")) and build["ratio_to_tokenizer"]["by_wall_time"] >= 0.9}


def _cell(r: dict | None, key: str) -> str:
    if r is None:
        return "-"
    if "error" in r:
        return "ERROR"
    return f"{r.get(key, 0):.3g}s {r['memory']['peak_anon_mb']:.0f}/{r['memory']['peak_rss_mb']:.0f}MB"


def table(result: dict) -> str:
    sizes = sorted({int(n) for s in result["stages"].values() for n in s})
    head = ["stage", *[f"{n:,}" for n in sizes], "t^b", "mem^b", f"{FULL / 1e6:.1f}M extrapolated: t / anon"]
    rows = [head]
    for stage, by_size in result["stages"].items():
        f = result["fits"].get(stage, {})
        t, m = f.get("time"), f.get("peak_anon_mb")
        rows.append([stage, *[_cell(by_size.get(str(n)), TIME_KEY.get(stage, "seconds")) for n in sizes],
                     f"{t['exponent']:.2f}" if t else "-", f"{m['exponent']:.2f}" if m else "-",
                     f"{t['at_full']['power_law']:.3g}s ({t['at_full']['linear']:.3g}) / "
                     f"{m['at_full']['power_law']:.0f}MB ({m['at_full']['linear']:.0f})" if t and m else "-"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("cells: time, anonymous peak / VmHWM (search: per 1,000 queries; dataset: start-up); b: fitted "
                 "exponent (memory: growth over the post-import baseline); extrapolated: power law (linear)")
    st = result["stages"]
    for n in sizes:
        b, r, s, d = (st.get(k, {}).get(str(n), {}) for k in ("build", "reopen", "search", "dataset"))
        lines.append(f"{n:>10,}: build/tokenizer {b.get('ratio_to_tokenizer')}; reopen corpus "
                     f"{r.get('corpus_reopen_seconds')} s, queries {r.get('queries_reopen_seconds')} s, open "
                     f"{r.get('token_cache_open_seconds')} s, first position() {r.get('first_position_seconds')} s; "
                     f"search all queries+positives {s.get('all_queries_and_positives_seconds_scaled')} s (scaled); "
                     f"dataset {d.get('examples_per_s')} examples/s")
    full = result["fits"].get("search", {}).get("all_queries_and_positives_at_full_seconds")
    if full:
        lines.append(f"search of all MS MARCO training queries + positives at {FULL:,}: {full['power_law']:,} s "
                     "(extrapolated)")
    tg = result.get("targets", {})
    if tg:
        lines.append(f"targets at {tg['at_passages']:,}: memory <= {tg['budget_mb']:.0f} MB anon {tg['memory_ok']}; "
                     f"reopen <= 1 s {tg['reopen_ok']} {tg['reopen_seconds']}; build/tokenizer >= 0.9 "
                     f"{tg['build_ok']} {tg['build_ratio']}")
    return "\n".join(lines)
