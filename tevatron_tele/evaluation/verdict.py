"""Which episode to keep, and whether it is better than where training started and than BM25.

The episode is chosen on a dev split (never on the test split). Two rules (`SELECTION_RULES`): `guarded` (the default)
keeps the start model (episode 0) and lets a later episode replace the kept one only when its per-query dev gain over it
is beyond noise (the lower end of the paired bootstrap 95% interval above zero); `best` keeps the best dev figure, ties
to the earlier episode, episode 0 unless a trained episode beats it at all. The verdict compares the selected episode's
per-query test figures with the start's and BM25's (paired bootstrap 95% interval).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from ..data.run_folder import RunLayout
from ..utils import PathLike, read_json
from .metrics import DEFAULT_METRIC

BOOTSTRAP_SAMPLES = 10000
SELECTION_RULES = ("guarded", "best")
SelectionRule = Literal["guarded", "best"]


def paired_bootstrap(diffs: Iterable[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict:
    """Mean of per-query differences with a 95% percentile interval over resampled queries.

    Args:
        diffs: one difference per query (a - b).
        samples: bootstrap resamples.
        seed: RNG seed (the interval is reproducible).

    Returns:
        {"mean", "ci95": [lo, hi], "p_le_0", "queries", "samples"}.
    """
    d = np.asarray(list(diffs), dtype=np.float64)
    if not len(d):
        raise ValueError("paired_bootstrap needs at least one query")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(samples, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(d.mean()), "ci95": [float(lo), float(hi)], "p_le_0": float((means <= 0).mean()),
            "queries": len(d), "samples": samples}


def compare(a: Mapping[str, float], b: Mapping[str, float], seed: int = 0) -> dict:
    """Paired bootstrap of a - b over the queries both score.

    Args:
        a, b: {query id: value} of each side (e.g. `per_query_values`).
        seed: RNG seed.

    Returns:
        `paired_bootstrap`'s result.
    """
    shared = sorted(set(a) & set(b))
    return paired_bootstrap([a[q] - b[q] for q in shared], seed=seed)


def select_episode(dev: Mapping[int, float]) -> int:
    """The episode to keep: best dev figure, ties to the earlier episode; episode 0 unless beaten.

    Args:
        dev: {episode: dev figure of the selection metric}; must contain episode 0.

    Returns:
        The selected episode.
    """
    if 0 not in dev:
        raise ValueError("select_episode needs the start model's dev figure (episode 0)")
    best = 0
    for episode in sorted(dev):
        if dev[episode] > dev[best]:
            best = episode
    return best


def select_episode_guarded(dev: Mapping[int, Mapping[str, float]], seed: int = 0) -> tuple[int, dict[int, dict]]:
    """The episode to keep under the `guarded` rule: visited in order, an episode replaces the kept one (first episode
    0) only when the paired bootstrap 95% interval of its per-query dev differences from the kept one lies above zero.

    Args:
        dev: {episode: {query id: dev value of the selection metric}}; must contain episode 0.
        seed: bootstrap seed.

    Returns:
        (the selected episode, {episode: the bootstrap of it against the episode kept at its turn, with "against": that
        episode and "replaced": whether it took its place}).
    """
    if 0 not in dev:
        raise ValueError("select_episode_guarded needs the start model's dev values (episode 0)")
    kept, tests = 0, {}
    for episode in sorted(e for e in dev if e != 0):
        result = compare(dev[episode], dev[kept], seed)
        replaced = result["ci95"][0] > 0
        tests[episode] = {"against": kept, "replaced": replaced, **result}
        if replaced:
            kept = episode
    return kept, tests


def _interval(result: dict) -> str:
    lo, hi = result["ci95"]
    return f"{result['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _describe(name: str, result: dict, metric: str) -> str:
    lo, hi = result["ci95"]
    sign = "beats" if lo > 0 else "loses to" if hi < 0 else "ties with"
    return f"{sign} {name} by {_interval(result)} {metric}"


def _selection_phrase(selected: int, dev: Mapping[int, float], metric: str, selection: Mapping | None) -> str:
    """How the kept episode was chosen on dev, for the verdict's first clause."""
    guarded = selection is not None and selection.get("rule") == "guarded"
    if selected == 0:
        best = max(sorted(dev), key=lambda e: dev[e])
        if guarded and best != 0 and dev[best] > dev[0]:
            test = selection["tests"][best]
            return (f"no episode beats the start beyond noise on the dev split (best: episode {best}, {metric} "
                    f"{dev[best]:.4f} against {dev[0]:.4f} at the start, {_interval(test)}): the start model "
                    "(episode 0) is kept")
        return (f"no episode beats the start on the dev split ({metric} {dev[0]:.4f}): the start model "
                "(episode 0) is kept")
    if guarded:
        test = selection["tests"][selected]
        return (f"episode {selected} (best on dev beyond noise, {metric} {dev[selected]:.4f} against {dev[0]:.4f} "
                f"at the start, {_interval(test)} over episode {test['against']})")
    return f"episode {selected} (best on dev, {metric} {dev[selected]:.4f} against {dev[0]:.4f} at the start)"


def verdict(selected: int, dev: Mapping[int, float] | None, test: Mapping[int, Mapping[str, float]],
            baselines: Mapping[str, Mapping[str, float]] | None = None, metric: str = DEFAULT_METRIC,
            seed: int = 0, selection: Mapping | None = None) -> dict:
    """The selected episode against the start and the baselines, on the test split, with a sentence.

    Args:
        selected: the episode chosen on dev (`select_episode` or `select_episode_guarded`).
        dev: {episode: dev figure}; None without a dev split (the last episode is then taken, as the sentence says).
        test: {episode: {query id: test value}} (episode 0 and the selected one at least).
        baselines: {name: {query id: test value}}, e.g. {"BM25": ...}.
        metric: the metric's name, for the sentence.
        seed: bootstrap seed.
        selection: how the episode was chosen, {"rule": a `SELECTION_RULES` name, "tests": {episode: bootstrap}} (the
            guarded rule's tests, named in the sentence); None reads as the `best` rule.

    Returns:
        {"selected", "metric", "dev", "test_mean", "vs": {name: bootstrap}, "selection", "text"}.
    """
    out = {"selected": selected, "metric": metric, "dev": {int(k): v for k, v in (dev or {}).items()} or None,
           "test_mean": {int(e): float(np.mean(list(v.values()))) for e, v in test.items() if v}, "vs": {}}
    if selection is not None:
        out["selection"] = {"rule": selection["rule"],
                            "tests": {int(e): dict(t) for e, t in selection.get("tests", {}).items()}}
    parts = [f"episode {selected} (the last: no dev split to select on)" if dev is None
             else _selection_phrase(selected, dev, metric, selection)]
    if selected:
        out["vs"]["start"] = compare(test[selected], test[0], seed)
        parts[-1] += " " + _describe("the start", out["vs"]["start"], metric) + " on test"
    for name, values in (baselines or {}).items():
        out["vs"][name] = compare(test[selected], values, seed)
        subject = "it" if selected else "the start model"
        parts.append(f"{subject} " + _describe(name, out["vs"][name], metric))
    out["text"] = "; ".join(parts) + "."
    return out


def compare_runs(run_dirs: Sequence[PathLike], seed: int = 0) -> dict | None:
    """Each run's kept episode and verdict, the differences between the runs' kept episodes, and the baselines.

    Args:
        run_dirs: run folders (those without RUN/best.json are left out).
        seed: bootstrap seed.

    Returns:
        {"metric", "runs": {name: {selected, test_mean, text}}, "pairs": [{a, b, ...bootstrap}], "baselines": {name:
        mean}}, or None when no run has a verdict.
    """
    judged = {}
    for run_dir in run_dirs:
        path = RunLayout(run_dir).best_json
        if path.exists():
            judged[Path(run_dir).name] = read_json(path)
    if not judged:
        return None
    names = list(judged)
    metrics = {v["metric"] for v in judged.values()}
    if len(metrics) > 1:
        raise ValueError(f"runs were judged on different metrics {sorted(metrics)}; compare runs of one metric")
    out = {"metric": metrics.pop(), "runs": {}, "pairs": [], "baselines": {}}
    for name, v in judged.items():
        out["runs"][name] = {"selected": v["selected"], "test_mean": v["test_mean"].get(str(v["selected"])),
                             "text": v["text"]}
        for base, values in v["per_query"].items():
            if base not in ("selected", "start"):
                out["baselines"].setdefault(base, sum(values.values()) / len(values))
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            diff = compare(judged[a]["per_query"]["selected"], judged[b]["per_query"]["selected"], seed)
            out["pairs"].append({"a": a, "b": b, **diff})
    return out
