"""Several runs side by side: a markdown report, a JSON file and PNG plots from `analyze_runs` output."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.pools import SOURCES
from ..utils import PathLike, atomic_path, write_json
from .analysis import analyze_runs
from .metrics import PREFERRED_METRICS
from .verdict import compare_runs

logger = logging.getLogger(__name__)


# ---- reading the analysis dict -------------------------------------------------------------------------

def metric_names(runs: Sequence[Mapping]) -> list[str]:
    """The metrics every run's convergence table holds, in the order reports list them.

    Args:
        runs: `analyze_run` results.

    Returns:
        Names as `collection/metric`: `PREFERRED_METRICS` first and, for each metric, the collections in the order
        eval.json lists them (the training collection first).
    """
    sets, collections = [], []
    for run in runs:
        conv = run.get("convergence") or {}
        sets.append({k for row in conv.get("episodes", []) for k in row if k != "episode"})
        for row in conv.get("episodes", []):
            for k in row:
                if k != "episode" and k.rpartition("/")[0] not in collections:
                    collections.append(k.rpartition("/")[0])
    common = set.intersection(*sets) if sets else set()

    def rank(name: str) -> tuple[int, int, str]:
        collection, _, tail = name.rpartition("/")
        return (PREFERRED_METRICS.index(tail) if tail in PREFERRED_METRICS else len(PREFERRED_METRICS),
                collections.index(collection), name)

    return sorted(common, key=rank)


def _by_episode(rows: Sequence[Mapping] | None, key: str, episode_key: str = "episode") -> dict[int, float]:
    return {int(r[episode_key]): r[key] for r in rows or [] if r.get(key) is not None}


def run_series(run: Mapping) -> dict:
    """The per-episode series of one analysed run, as the tables and plots show them.

    Args:
        run: an `analyze_run` result.

    Returns:
        {"own_pool", "probe", "probe_above", "ann_jaccard", "pool_per_query": {episode: value}, "composition": {episode:
        {source: per query}}, "metrics": {metric: {episode: value}}}.
    """
    forgetting = run.get("forgetting") or {}
    conv = run.get("convergence") or {}
    metrics: dict[str, dict[int, float]] = {}
    for row in conv.get("episodes", []):
        for k, v in row.items():
            if k != "episode":
                metrics.setdefault(k, {})[int(row["episode"])] = v
    composition = {int(i): {s: v["per_query"] for s, v in src["sources"].items()}
                   for i, src in (run.get("sources") or {}).items()}
    return {
        "own_pool": _by_episode((forgetting.get("own_pool") or {}).get("rates"), "rate"),
        "probe": _by_episode((forgetting.get("probe") or {}).get("rates"), "rate"),
        "probe_above": _by_episode((run.get("probe") or {}).get("above_positive"), "fraction"),
        "ann_jaccard": _by_episode(run.get("ann_overlap"), "jaccard", "to"),
        "pool_per_query": {int(i): src["per_query"] for i, src in (run.get("sources") or {}).items()},
        "composition": composition,
        "metrics": metrics,
    }


def format_value(value: Any, digits: int = 3) -> str:
    """A table cell.

    Args:
        value: a number, None or anything else.
        digits: decimal places of a float.

    Returns:
        Floats to `digits` places, None as "-", others as `str`.
    """
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


# ---- markdown -------------------------------------------------------------------------------------------

def verdict_lines(verdict: Mapping | None) -> list[str]:
    """The report's opening section: each run's kept episode, then the runs against each other and the baselines.

    Args:
        verdict: `evaluation.verdict.compare_runs`'s result, or None.

    Returns:
        Markdown lines (none without a verdict).
    """
    if not verdict:
        return []
    metric = verdict["metric"]
    lines = ["## Verdict", ""]
    lines += [f"- **{name}**: {run['text']}" for name, run in verdict["runs"].items()]
    if verdict["pairs"]:
        lines += ["", f"Kept episodes against each other, test {metric}, paired bootstrap 95% interval over the "
                      "queries:", "", "| run | against | difference | 95% interval |", "|---|---|---|---|"]
        lines += [f"| {p['a']} | {p['b']} | {p['mean']:+.3f} | [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}] |"
                  for p in verdict["pairs"]]
    if verdict["baselines"]:
        lines += ["", "Baselines, test " + metric + ": " + ", ".join(f"{name} {format_value(value)}"
                                                                   for name, value in verdict["baselines"].items())]
    return lines + [""]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _summary(runs: Sequence[Mapping], main: str | None) -> tuple[list[str], list[list[str]]]:
    """The summary table: a row per run."""
    header = ["run", "episodes"]
    if main:
        header += [f"final {main}", f"best {main} (episode)", "first episode within 1% of best"]
    header += ["own-pool forgetting (last)", "probe forgetting (last)", "probe forgetting (mean)",
               "ANN Jaccard (mean)"]
    rows = []
    for run in runs:
        s = run_series(run)
        row = [run["name"], str(len(run.get("episodes", [])))]
        if main:
            series = s["metrics"].get(main, {})
            best = ((run.get("convergence") or {}).get("best") or {}).get(main, {})
            final = series[max(series)] if series else None
            row += [format_value(final), f"{format_value(best.get('best'))} ({best.get('best_episode', '-')})",
                    format_value(best.get("first_within_tol"))]
        last = lambda d: d[max(d)] if d else None  # noqa: E731
        row += [format_value(v) for v in (last(s["own_pool"]), last(s["probe"]), _mean(s["probe"].values()),
                                          _mean(s["ann_jaccard"].values()))]
        rows.append(row)
    return header, rows


def _per_episode(runs: Sequence[Mapping], names: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The per-episode table: a row per run and episode."""
    compositions = [c for r in runs for c in run_series(r)["composition"].values()]
    sources = [src for src in SOURCES if any(src in c for c in compositions)]
    header = ["run", "episode", *names, "own-pool forgetting", "probe forgetting", "probe above positive",
              "ANN Jaccard with previous", "negatives per query", *[f"{src} per query" for src in sources]]
    rows = []
    for run in runs:
        s = run_series(run)
        for ep in run.get("episodes", []):
            comp = s["composition"].get(ep, {})
            rows.append([run["name"], str(ep), *[format_value(s["metrics"].get(m, {}).get(ep)) for m in names],
                         *[format_value(s[k].get(ep)) for k in ("own_pool", "probe", "probe_above", "ann_jaccard")],
                         format_value(s["pool_per_query"].get(ep), 1),
                         *[format_value(comp.get(src), 1) for src in sources]])
    return header, rows


def markdown_report(analysis: Mapping, main_metric: str | None = None) -> str:
    """report.md: the verdict, the probe, a summary row per run and a row per episode.

    Args:
        analysis: `analyze_runs`' result (with "verdict").
        main_metric: the summary's metric (default: the first of `metric_names`).

    Returns:
        The markdown text.
    """
    runs = analysis["runs"]
    names = metric_names(runs)
    main = main_metric or (names[0] if names else None)
    probe = analysis.get("probe") or {}
    lines = ["# Forgetting analysis", ""] + verdict_lines(analysis.get("verdict"))
    if probe:
        lines += [f"Probe: {probe.get('pairs', 0)} negatives of {probe.get('queries', 0)} training queries "
                  f"(top {probe.get('k', '?')} of the base model's ranking in {probe.get('from', '?')}), "
                  "shared by all runs.", ""]
    lines += [
        "Forgetting rate at episode j: of the negatives learned (scored below the query's best positive) in "
        "any earlier episode, the share scored above it again by episode j's model. Own-pool rates use each "
        "run's training pools; probe rates use the shared probe and are comparable across runs. "
        "ANN Jaccard at episode j: mean per-query Jaccard overlap of the top-k negatives retrieved by episode "
        "j's model and by episode j-1's model (1 = the hard negatives did not move).",
        "",
        "## Summary",
        "",
    ]
    lines += _table(*_summary(runs, main))
    lines += ["", "## Per episode", ""] + _table(*_per_episode(runs, names))
    return "\n".join(lines) + "\n"


# ---- plots ----------------------------------------------------------------------------------------------

@functools.cache
def _pyplot():
    import matplotlib.pyplot as plt  # lazy: slow to load, and `driver.analyze --help` imports this module

    plt.switch_backend("Agg")
    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_STYLES = ("-", "--", "-.", ":")


def _lines(ax: Any, runs: Sequence[Mapping], key_fn: Callable, *, ylabel: str, title: str, ylim=None,
           first_episode: int = 0) -> bool:
    drawn = False
    for n, run in enumerate(runs):
        series = key_fn(run_series(run))
        if series:
            eps = sorted(series)
            # distinct markers and dashes keep runs with equal values visible
            ax.plot(eps, [series[e] for e in eps], marker=_MARKERS[n % len(_MARKERS)],
                    linestyle=_STYLES[n % len(_STYLES)], markersize=8 - min(n, 4), alpha=0.85, label=run["name"])
            drawn = True
    ax.set_title(title)
    ax.set_xlabel("episode")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if ylim:
        ax.set_ylim(*ylim)
    all_eps = sorted({e for r in runs for e in r.get("episodes", []) if e >= first_episode})
    if all_eps:
        ax.set_xticks(all_eps)
    if drawn:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    return drawn


def _plot_forgetting(runs: Sequence[Mapping], path: Path) -> Path:
    plt = _pyplot()
    rates = [v for r in runs for key in ("own_pool", "probe") for v in run_series(r)[key].values() if v is not None]
    # rates are often a few percent: scale the axis to the data (from zero, so heights stay comparable)
    ylim = (0, max(0.01, 1.25 * max(rates, default=0.0)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True, layout="constrained")
    _lines(axes[0], runs, lambda s: s["own_pool"], ylabel="forgetting rate (forgotten / learned)",
           title="On each run's own training pools", ylim=ylim, first_episode=1)
    _lines(axes[1], runs, lambda s: s["probe"], ylabel="forgetting rate (forgotten / learned)",
           title="On the shared probe (comparable across runs)", ylim=ylim, first_episode=1)
    for ax in axes:
        ax.yaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    fig.suptitle("Forgetting rate by episode: earlier-learned negatives ranked above the positive again")
    return _save(fig, path)


def _plot_metrics(runs: Sequence[Mapping], path: Path, names: Sequence[str] | None = None) -> Path:
    plt = _pyplot()
    names = list(names or metric_names(runs))[:4] or ["(none)"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4.2), squeeze=False, layout="constrained")
    for ax, name in zip(axes[0], names):
        _lines(ax, runs, lambda s, n=name: s["metrics"].get(n, {}), ylabel=name, title=name)
    fig.suptitle("Retrieval quality after each episode (episode 0 = base model)")
    return _save(fig, path)


def _plot_overlap(runs: Sequence[Mapping], path: Path, k: int | None = None) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    _lines(ax, runs, lambda s: s["ann_jaccard"], ylabel="mean Jaccard with previous episode",
           title=f"Top-{k or 'k'} ANN negatives: overlap with the previous episode's model", ylim=(0, 1.05),
           first_episode=1)
    return _save(fig, path)


def _plot_composition(runs: Sequence[Mapping], path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4.2), squeeze=False, sharey=True,
                             layout="constrained")
    colors = {"ann": "tab:blue", "lookahead": "tab:orange", "momentum": "tab:green", "bm25": "tab:gray"}
    for ax, run in zip(axes[0], runs):
        comp = run_series(run)["composition"]
        eps = sorted(comp)
        sources = [s for s in SOURCES if any(s in comp[e] for e in eps)]
        sources += sorted({s for e in eps for s in comp[e]} - set(sources))
        bottom = [0.0] * len(eps)
        for src in sources:
            values = [comp[e].get(src, 0.0) for e in eps]
            ax.bar(eps, values, bottom=bottom, label=src, color=colors.get(src))
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_title(run["name"])
        ax.set_xlabel("episode")
        ax.set_ylabel("negatives per query, by source")
        if eps:
            ax.set_xticks(eps)
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no pools", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Pool composition by episode (a negative found by two sources counts in both)")
    return _save(fig, path)


def write_report(analysis: Mapping, out_dir: PathLike, main_metric: str | None = None) -> dict[str, Path]:
    """Write report.md, analysis.json and the PNG plots into `out_dir`.

    Args:
        analysis: `analyze_runs`' result (with "verdict").
        out_dir: the report folder.
        main_metric: as for `markdown_report`.

    Returns:
        {"json", "markdown", "forgetting_png", "metrics_png", "overlap_png", "composition_png": path}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = analysis["runs"]
    paths = {"json": out / "analysis.json", "markdown": out / "report.md"}
    write_json(paths["json"], analysis)
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(markdown_report(analysis, main_metric), encoding="utf-8")
    k = runs[0].get("ann_overlap_k") if runs else None
    paths["forgetting_png"] = _plot_forgetting(runs, out / "forgetting.png")
    paths["metrics_png"] = _plot_metrics(runs, out / "metrics.png")
    paths["overlap_png"] = _plot_overlap(runs, out / "ann_overlap.png", k)
    paths["composition_png"] = _plot_composition(runs, out / "pool_composition.png")
    logger.info("report written to %s", out)
    return paths


def analyze_and_report(run_dirs: Sequence[PathLike], out_dir: PathLike, *, main_metric: str | None = None,
                       **analysis_options) -> tuple[dict, dict[str, Path]]:
    """Analyse runs and write their report, verdict first (the one path of `driver.analyze`, the runner and the demo).

    Args:
        run_dirs: run folders (each with manifest.json and episode-<i>/).
        out_dir: the report folder (report.md, analysis.json, PNG plots).
        main_metric: the metric of the summary (default: the first preferred one the runs have).
        **analysis_options: `analyze_runs`' options (probe, probe_k, max_queries, cache_dir, device, ...).

    Returns:
        (the analysis, with "verdict": `compare_runs`' result or None; the written files' paths).
    """
    analysis = analyze_runs(run_dirs, **analysis_options)
    analysis["verdict"] = compare_runs(run_dirs)
    return analysis, write_report(analysis, out_dir, main_metric)
