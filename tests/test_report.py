"""Run summaries and the side-by-side report (markdown, JSON, PNG) from hand-built inputs."""
from __future__ import annotations

import importlib.util
import json

import pytest

from tevatron_tele.evaluation.analysis import build_probe, sample_queries, summarize_run
from tevatron_tele.evaluation.report import markdown_report, metric_names, write_report

POSITIVES = {"q1": ["p1"], "q2": ["p2"]}
TABLES = {
    1: {"q1": {"p1": 1.0, "a": 0.5, "b": 2.0, "c": 0.9}, "q2": {"p2": 1.0, "x": 0.0, "y": 0.5}},
    2: {"q1": {"p1": 1.0, "a": 1.5, "b": 0.1, "c": 0.2}, "q2": {"p2": 1.0, "x": 0.2, "y": 2.0}},
}
RANKINGS = {
    0: {"q1": [("b", 3.0), ("p1", 2.0), ("a", 1.0)], "q2": [("y", 2.0), ("p2", 1.0), ("x", 0.5)]},
    1: {"q1": [("a", 3.0), ("b", 2.0), ("p1", 1.0)], "q2": [("x", 2.0), ("p2", 1.0), ("y", 0.5)]},
}
EVALS = {0: {"nDCG@10": 0.40, "R@100": 0.8}, 1: {"nDCG@10": 0.50, "R@100": 0.85}, 2: {"nDCG@10": 0.52, "R@100": 0.9}}


def _run(name, pools, sources):
    probe = build_probe(RANKINGS[0], POSITIVES, k=3)
    return summarize_run(name, [0, 1, 2], TABLES, POSITIVES, pools, sources, probe, RANKINGS, EVALS, overlap_k=3)


def _analysis():
    fixed = {"q1": ["a", "b", "c"], "q2": ["x", "y"]}
    static = _run("static", {1: fixed, 2: fixed}, {1: {q: {"ann": d} for q, d in fixed.items()},
                                                  2: {q: {"ann": d, "momentum": d} for q, d in fixed.items()}})
    moving_pools = {1: {"q1": ["a", "c"], "q2": ["x"]}, 2: {"q1": ["b"], "q2": ["y"]}}
    moving = _run("moving", moving_pools, {i: {q: {"ann": d, "lookahead": d[:1]} for q, d in p.items()}
                                           for i, p in moving_pools.items()})
    return {"probe": {"queries": 2, "pairs": 4, "k": 3, "from": "static"}, "runs": [static, moving]}


def test_probe_is_base_top_k_minus_positives():
    assert build_probe(RANKINGS[0], POSITIVES, k=2) == {"q1": ["b"], "q2": ["y"]}
    assert build_probe(RANKINGS[0], POSITIVES, k=3, queries=["q2"]) == {"q2": ["y", "x"]}


def test_query_sample_is_deterministic_and_order_free():
    qids = [f"q{i}" for i in range(50)]
    assert sample_queries(qids, 10) == sample_queries(list(reversed(qids)), 10)
    assert len(sample_queries(qids, 10)) == 10 and sample_queries(qids, None) == sorted(qids)


def test_summary_of_a_run():
    static = _analysis()["runs"][0]
    # learned in 1: q1/a, q1/c, q2/x, q2/y; at 2, q1/a (1.5) and q2/y (2.0) are above the positive again
    assert static["forgetting"]["own_pool"]["rates"] == [
        {"episode": 2, "learned_before": 4, "forgotten": 2, "rate": 0.5}]
    # probe {q1: [b, a], q2: [y, x]}: learned in 1 = q1/a, q2/x, q2/y -> at 2: q1/a, q2/y forgotten
    assert static["forgetting"]["probe"]["rates"][0]["rate"] == pytest.approx(2 / 3)
    assert static["probe"]["above_positive"] == [{"episode": 1, "above_positive": 1, "fraction": 0.25},
                                                  {"episode": 2, "above_positive": 2, "fraction": 0.5}]
    # unchanged pools: no overlap change; ANN top-3 of 0 vs 1: q1 {b,a} vs {a,b}, q2 {y,x} vs {x,y}
    assert [r["change"] for r in static["pool_overlap"]] == [0.0]
    assert static["ann_overlap"][0]["jaccard"] == 1.0
    assert static["sources"]["2"]["sources"]["momentum"]["per_query"] == 2.5
    assert static["convergence"]["best"]["nDCG@10"]["first_within_tol"] == 2


def test_main_collection_leads_and_counts_are_not_metrics():
    from tevatron_tele.evaluation.forgetting import convergence

    # the runner writes the training collection's test split first; its name sorts after the other one
    evals = {i: {"scifact/test": {"num_queries": 300, "nDCG@10": 0.6 + i / 100, "R@100": 0.9},
                 "msmarco-dl19-subset": {"num_queries": 43, "nDCG@10": 0.8, "R@100": 0.8}} for i in (0, 1)}
    runs = [{"name": "r", "episodes": [0, 1], "convergence": convergence(evals)}]
    assert metric_names(runs) == ["scifact/test/nDCG@10", "msmarco-dl19-subset/nDCG@10", "scifact/test/R@100",
                                  "msmarco-dl19-subset/R@100"]
    summary = markdown_report({"runs": runs}).split("## Per episode")[0]
    assert "final scifact/test/nDCG@10" in summary and "| r | 2 | 0.610 |" in summary


def test_markdown_has_a_row_per_run_and_episode():
    analysis = _analysis()
    assert metric_names(analysis["runs"]) == ["nDCG@10", "R@100"]
    md = markdown_report(analysis)
    summary, per_episode = md.split("## Per episode")
    assert [line.split("|")[1].strip() for line in summary.splitlines() if line.startswith("| ") and
            not line.startswith("| run")] == ["static", "moving"]
    rows = [line for line in per_episode.splitlines() if line.startswith("| ") and not line.startswith("| run")]
    assert len(rows) == 6
    assert "| static | 2 | 0.520 | 0.900 | 0.500 | 0.667 |" in per_episode
    assert "lookahead per query" in per_episode and "momentum per query" in per_episode


def record_plots(monkeypatch) -> dict:
    """What each PNG of `write_report` draws, by file name: per axes its title, its lines ({label: {x: y}}) and its
    bars ([(x, height)]), read from the figure when it is saved."""
    import tevatron_tele.evaluation.report as report

    figures: dict[str, list[dict]] = {}
    save = report._save

    def recording_save(fig, path):
        figures[path.name] = [
            {"title": ax.get_title(),
             "lines": {line.get_label(): {int(x): float(y) for x, y in zip(line.get_xdata(), line.get_ydata())}
                       for line in ax.lines},
             "bars": [(round(b.get_x() + b.get_width() / 2), b.get_height()) for b in ax.patches]}
            for ax in fig.axes]
        return save(fig, path)

    monkeypatch.setattr(report, "_save", recording_save)
    return figures


def check_plots_show_the_analysis(figures: dict, analysis: dict) -> None:
    """Every plot draws the series `run_series` makes of the analysis (analysis.json), for every run."""
    from tevatron_tele.evaluation.report import run_series

    runs = analysis["runs"]
    assert set(figures) == {"forgetting.png", "metrics.png", "ann_overlap.png", "pool_composition.png"}
    own, probe = figures["forgetting.png"]
    overlap, = figures["ann_overlap.png"]
    names = metric_names(runs)[:4]
    assert [ax["title"] for ax in figures["metrics.png"]] == names
    for n, run in enumerate(runs):
        series = run_series(run)
        assert own["lines"][run["name"]] == pytest.approx(series["own_pool"]) and series["own_pool"]
        assert probe["lines"][run["name"]] == pytest.approx(series["probe"]) and series["probe"]
        assert overlap["lines"][run["name"]] == pytest.approx(series["ann_jaccard"]) and series["ann_jaccard"]
        for ax, name in zip(figures["metrics.png"], names):
            assert ax["lines"][run["name"]] == pytest.approx(series["metrics"][name])
        bars = figures["pool_composition.png"][n]
        assert bars["title"] == run["name"]
        stacked: dict[int, float] = {}
        for x, height in bars["bars"]:
            stacked[x] = stacked.get(x, 0.0) + height
        assert stacked == pytest.approx({e: sum(c.values()) for e, c in series["composition"].items()})
        assert series["composition"]


def test_write_report_files(tmp_path, monkeypatch):
    figures = record_plots(monkeypatch)
    paths = write_report(_analysis(), tmp_path / "report")
    analysis = json.loads(paths["json"].read_text())
    assert [r["name"] for r in analysis["runs"]] == ["static", "moving"]
    assert "| moving |" in paths["markdown"].read_text()
    for key in ("forgetting_png", "metrics_png", "overlap_png", "composition_png"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", key
    check_plots_show_the_analysis(figures, analysis)
    # the values drawn, by hand from TABLES, RANKINGS and the pools of _analysis()
    own, probe = figures["forgetting.png"]
    # static: pool 1 = pool 2; learned in episode 1 (below the positive): q1 a, c; q2 x, y; model 2 puts q1 a
    # (1.5) and q2 y (2.0) above the positive again -> 2/4. moving: pool 1 learned q1 a, c; q2 x -> q1 a, 1/3
    assert own["lines"]["static"] == {2: 2 / 4} and own["lines"]["moving"] == pytest.approx({2: 1 / 3})
    # the probe (base top 3 minus positives: q1 b, a; q2 y, x): learned a, y, x; forgotten a, y -> 2/3 for both
    assert probe["lines"]["static"] == probe["lines"]["moving"] == pytest.approx({2: 2 / 3})
    # episode 0's and 1's top-3 negatives are the same sets (q1 {a, b}, q2 {x, y}): Jaccard 1 at episode 1
    assert figures["ann_overlap.png"][0]["lines"] == {"static": {1: 1.0}, "moving": {1: 1.0}}
    assert figures["metrics.png"][0]["lines"]["moving"] == pytest.approx({0: 0.40, 1: 0.50, 2: 0.52})
    # negatives per query by source: static ann (3 + 2) / 2 each episode, momentum the same in episode 2
    static_bars, moving_bars = (ax["bars"] for ax in figures["pool_composition.png"])
    assert sorted(static_bars) == [(1, 0.0), (1, 2.5), (2, 2.5), (2, 2.5)]  # no momentum in episode 1
    assert sorted(moving_bars) == [(1, 1.0), (1, 1.5), (2, 1.0), (2, 1.0)]


# ---- end to end: a hand-built run folder with tiny models -------------------------------------------------

def _episode_run(root, name, models, rankings, pools, collection_dir, evals):
    """RUN/manifest.json + episode-<i>/{model, rankings/queries.trec, pool.jsonl, eval.json} as the runner
    lays them out; models are symlinks to tiny model folders."""
    from tevatron_tele.data.trec import write_run
    from tevatron_tele.utils import write_json

    run = root / name
    write_json(run / "manifest.json", {"config": {"model_name_or_path": str(models[0]), "collection": str(
        collection_dir), "split": "train", "q_max_len": 16, "p_max_len": 48}})
    for i, model in enumerate(models):
        ep = run / f"episode-{i}"
        (ep / "rankings").mkdir(parents=True)
        write_run(ep / "rankings" / "queries.trec", rankings[i])
        write_json(ep / "eval.json", evals[i])
        if i >= 1:
            (ep / "model").symlink_to(model, target_is_directory=True)
            with open(ep / "pool.jsonl", "w", encoding="utf-8") as f:
                for entry in pools[i]:
                    f.write(json.dumps(entry) + "\n")
    return run


def _perturbed_copy(model_dir, out_dir, seed):
    """A stand-in for a trained episode model: the tiny model with its weights moved by seeded noise."""
    import shutil

    import torch
    from transformers import AutoModel

    shutil.copytree(model_dir, out_dir)
    model = AutoModel.from_pretrained(model_dir)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.5 * float(p.std() if p.numel() > 1 else 0.0))
    model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def episode_runs(synthetic_dir, tiny_model_dir, tmp_path_factory):
    import numpy as np
    import torch

    from tevatron_tele.backends import load_encoder
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.data.token_cache import corpus_token_cache, query_token_cache
    from tevatron_tele.evaluation.metrics import evaluate_run
    from tevatron_tele.retrieval.encode import encode_texts

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("episode-runs")
    models = [tiny_model_dir] + [_perturbed_copy(tiny_model_dir, root / f"model-{s}", seed=s) for s in (1, 2)]
    collection = load_collection(synthetic_dir, "train")
    qids = [q for q in collection.queries if collection.positives(q)][:12]
    cache = root / "cache"
    tables, rankings = {}, {}
    for i, model_dir in enumerate(models):  # reference scores: the whole corpus, encoded once per model
        model, tok = load_encoder(model_dir)
        corpus, queries = corpus_token_cache(collection, tok, 48, cache), query_token_cache(collection, tok, 16, cache)
        p = encode_texts(model, tok, corpus, None, is_query=False, max_len=48, progress=False)
        q = encode_texts(model, tok, queries, qids, is_query=True, max_len=16, progress=False)
        scores = q @ p.T
        tables[i] = {qid: dict(zip(corpus.ids, map(float, row))) for qid, row in zip(qids, scores)}
        rankings[i] = {qid: [(corpus.ids[j], float(row[j])) for j in np.argsort(-row)[:30]]
                       for qid, row in zip(qids, scores)}
    positives = {q: collection.positives(q) for q in qids}

    def entry(q, sources):
        negs = list(dict.fromkeys(d for ds in sources.values() for d in ds))
        return {"query_id": q, "query_text": collection.queries[q], "positive_document_ids": positives[q],
                "negative_document_ids": negs, "sources": sources}

    ann = {i: {q: [d for d, _ in rankings[i][q] if d not in positives[q]][:6] for q in qids} for i in (0, 1)}
    moving = {1: [entry(q, {"ann": ann[0][q]}) for q in qids],
              2: [entry(q, {"ann": ann[1][q], "momentum": ann[0][q]}) for q in qids]}
    static = {1: moving[1], 2: moving[1]}
    evals = {i: evaluate_run(rankings[i], {q: {d: 1 for d in positives[q]} for q in qids}, ("MRR@10", "R@20"))
             for i in range(3)}
    runs = [_episode_run(root, "moving", models, rankings, moving, synthetic_dir, evals),
            _episode_run(root, "static", models, rankings, static, synthetic_dir, evals)]
    return runs, tables, rankings, positives, {"moving": moving, "static": static}, evals


def test_score_pairs_matches_full_corpus_encoding(episode_runs, tmp_path):
    from tevatron_tele.evaluation.analysis import open_run, score_episodes

    runs, tables, _, positives, _, _ = episode_runs
    ws = open_run(runs[0])
    pairs = {q: positives[q] + list(tables[1][q])[:7] for q in list(positives)[:4]}
    scored = score_episodes(ws, pairs, tmp_path / "cache")
    assert sorted(scored) == [1, 2]
    for i in (1, 2):
        for q, docs in pairs.items():
            assert set(scored[i][q]) == set(docs)
            for d in docs:
                assert scored[i][q][d] == pytest.approx(tables[i][q][d], abs=1e-4)


@pytest.mark.slow
def test_analyze_driver_on_episode_runs(episode_runs, tmp_path, monkeypatch):
    from tevatron_tele.driver.analyze import main
    from tevatron_tele.evaluation.analysis import build_probe, summarize_run

    runs, tables, rankings, positives, pools, evals = episode_runs
    out = tmp_path / "report"
    figures = record_plots(monkeypatch)
    analysis = main([str(r) for r in runs] + ["--out", str(out), "--probe_k", "5", "--overlap_k", "10"])
    probe = build_probe(rankings[0], positives, 5)
    assert json.loads((out / "probe.json").read_text()) == probe
    for run in analysis["runs"]:
        entries = pools[run["name"]]
        expected = summarize_run(
            run["name"], [0, 1, 2], {i: tables[i] for i in (1, 2)}, positives,
            {i: {e["query_id"]: e["negative_document_ids"] for e in entries[i]} for i in (1, 2)},
            {i: {e["query_id"]: e["sources"] for e in entries[i]} for i in (1, 2)},
            probe, rankings, evals, overlap_k=10)
        for key in ("forgetting", "ann_overlap", "pool_overlap", "probe"):
            assert run[key] == expected[key], (run["name"], key)
        assert run["sources"].keys() == expected["sources"].keys()
    static = next(r for r in analysis["runs"] if r["name"] == "static")
    assert [r["change"] for r in static["pool_overlap"]] == [0.0]
    learned = static["forgetting"]["own_pool"]["learned"]
    assert learned[0]["learned"] > 0  # the test exercises a non-empty learned set
    md = (out / "report.md").read_text()
    assert "| moving |" in md and "| static |" in md
    check_plots_show_the_analysis(figures, json.loads((out / "analysis.json").read_text()))


@pytest.mark.slow
def test_demo_report_opens_with_the_verdict(tmp_path, capfd):
    """The demo analyses and reports through the same function as the runner and driver.analyze: its report
    opens with the verdict of each run, which every run of the demo writes (best.json). Its log has no
    weight-loading bars, and on its collection (queries with synonyms) BM25 is well below 1."""
    from tevatron_tele.driver.demo import main

    out = main(["--output_dir", str(tmp_path / "demo"), "--recipes", "ann", "--num_episodes", "1",
                "--num_train_epochs", "1"])
    assert "Loading weights" not in capfd.readouterr().err
    best = json.loads((tmp_path / "demo" / "run-ann" / "best.json").read_text())
    if importlib.util.find_spec("pyserini") is not None:  # --baselines auto: BM25 with Pyserini
        assert sum(best["per_query"]["BM25"].values()) / len(best["per_query"]["BM25"]) < 0.85
    md = (out / "report.md").read_text()
    assert md.split("\n\n")[1].startswith("## Verdict")
    assert f"- **run-ann**: {best['text']}" in md
    assert json.loads((out / "analysis.json").read_text())["verdict"]["runs"]["run-ann"]["text"] == best["text"]
