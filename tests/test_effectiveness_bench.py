"""The effectiveness study's planning, sharing, statistics and summary, and one tiny end-to-end study."""
from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "effectiveness.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("effectiveness_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _profile(bench, name):
    return {**bench.COMMON, **bench.PROFILES[name]}


def test_plan_pairs_seeds_and_gives_bm25_the_chain_steps(bench):
    profile = _profile(bench, "cpu")
    plan = bench.experiments(profile, [3, 1, 2], n_train_queries=809)
    names = [e.name for e in plan]
    assert names[0] == "zero-shot"
    # headline pairs in seed order, Tele first so the shared base cache gets the lookahead ranking
    assert names[1:7] == ["tele-s3", "ance-s3", "tele-s1", "ance-s1", "tele-s2", "ance-s2"]
    single = [e for e in plan if e.part in ("ablations", "refresh") or e.name.startswith("bm25neg")]
    assert all(e.overrides["seed"] == 3 for e in single)
    bm25 = next(e for e in plan if e.name == "bm25neg-s3")
    spe = math.ceil(809 / 8)
    total = 40 + 40 + math.ceil(2.0 * spe)
    assert bench.chain_steps(profile, 809) == total
    # the trainer's step count: ceil(epochs * steps per epoch)
    assert math.ceil(bm25.overrides["num_train_epochs"] * spe) == total
    assert bm25.overrides["num_episodes"] == 1 and bm25.overrides["negatives"] == "bm25"


def test_variables_part_pairs_recipes_and_shares_only_what_is_equal(bench):
    from tevatron_tele.runner.config import EpisodeArguments

    profile = _profile(bench, "quick")
    plan = {e.name: e for e in bench.experiments(profile, [1], n_train_queries=809) if e.part == "variables"}
    lr, sample = profile["lr_alt"], profile["sample_alt"]
    assert set(plan) == {f"{r}-lr{lr:g}-s1" for r in ("tele", "ance")} | {f"{r}-sample{sample}-s1"
                                                                          for r in ("tele", "ance")}
    assert plan[f"ance-lr{lr:g}-s1"].overrides == {"negatives": "ann", "learning_rate": lr, "seed": 1}
    assert plan[f"tele-sample{sample}-s1"].overrides == {"negatives": "tele", "sample": sample, "seed": 1}

    def config(**kw):
        return EpisodeArguments(output_dir="x", model_name_or_path="m", collection="c", **kw).result_config()

    # a higher learning rate leaves episode 1's pool as the headline run's; fewer negatives per source does not
    source, target = plan[f"tele-lr{lr:g}-s1"].share[0][1], plan[f"tele-lr{lr:g}-s1"].overrides
    assert source == "tele-s1"
    assert bench.can_share(config(negatives="tele", seed=1), config(**target), "pool") == []
    assert bench.can_share(config(negatives="tele", seed=1), config(**target), "episode")
    assert not plan[f"tele-sample{sample}-s1"].share
    assert bench.can_share(config(negatives="tele", seed=1), config(negatives="tele", sample=sample, seed=1), "pool")


def test_beyond_part_filters_replays_and_mixes_bm25(bench):
    from tevatron_tele.runner.config import EpisodeArguments

    profile = _profile(bench, "quick")
    plan = {e.name: e for e in bench.experiments(profile, [2], n_train_queries=809) if e.part == "beyond"}
    m = profile["margin_alt"]
    assert set(plan) == {f"tele-margin{m:g}-s2", f"ance-margin{m:g}-s2", "tele-forgotten-s2", "telebm25-s2"}
    assert plan[f"ance-margin{m:g}-s2"].overrides == {"negatives": "ann", "negative_margin": m, "seed": 2}
    assert plan["telebm25-s2"].overrides["negatives"] == "tele+bm25"
    assert all(e.label for e in plan.values())

    def config(**kw):
        return EpisodeArguments(output_dir="x", model_name_or_path="m", collection="c", **kw).result_config()

    # forgotten-first replay changes nothing before episode 2: Tele's whole episode 1 is its episode 1
    forgotten = plan["tele-forgotten-s2"]
    assert forgotten.share == [(1, "tele-s2", "episode")]
    assert bench.can_share(config(negatives="tele", seed=2), config(**forgotten.overrides), "episode") == []
    # a filtered pool is another pool: never taken from an unfiltered run
    assert not plan[f"tele-margin{m:g}-s2"].share
    assert bench.can_share(config(negatives="tele", seed=2), config(**plan[f"tele-margin{m:g}-s2"].overrides),
                           "pool")


def test_sharing_rules(bench):
    from tevatron_tele.runner.config import EpisodeArguments

    def config(**kw):
        return EpisodeArguments(output_dir="x", model_name_or_path="m", collection="c", **kw).result_config()

    tele, ann = config(negatives="tele", seed=1), config(negatives="ann", seed=1)
    assert bench.can_share(tele, config(negatives="tele", tele_sources="ann,lookahead", seed=1), "episode") == []
    assert bench.can_share(ann, config(negatives="tele", tele_sources="ann,momentum", seed=1), "episode") == []
    # weighted mixing trains differently: its pool may be shared, its model may not
    weighted = config(negatives="tele", negative_mixing="weighted", seed=1)
    assert bench.can_share(tele, weighted, "pool") == []
    assert bench.can_share(tele, weighted, "episode")
    assert bench.can_share(tele, config(negatives="tele", seed=2), "pool")  # other seed, other sample
    assert bench.can_share(tele, ann, "pool")  # lookahead is in episode 1 of one only


def test_share_links_only_finished_matching_episodes(bench, tmp_path):
    from tevatron_tele.runner.config import EpisodeArguments
    from tevatron_tele.utils import write_json

    runs = tmp_path / "runs"
    src = runs / "tele-s1"
    (src / "episode-1" / "model").mkdir(parents=True)
    (src / "episode-1" / "embeddings").mkdir()
    (src / "episode-1" / "embeddings" / "corpus.npy").write_bytes(b"x")
    for name in ("pool.jsonl", "pool.stats.json", "DONE", "eval.json", "model/weights"):
        (src / "episode-1" / name).write_text(name)
    src_args = EpisodeArguments(output_dir=str(src), model_name_or_path="m", collection="c", seed=1)
    write_json(src / "manifest.json", {"config": src_args.result_config()})

    exp = bench.Experiment("tele-nomomentum-s1", "ablations", {}, [(1, "tele-s1", "episode")])
    args = EpisodeArguments(output_dir=str(runs / exp.name), model_name_or_path="m", collection="c", seed=1,
                            tele_sources="ann,lookahead")
    assert bench.share_first_episode(exp, args, runs) == [{"episode": 1, "from": "tele-s1", "what": "episode"}]
    dst = runs / exp.name / "episode-1"
    assert (dst / "DONE").exists() and (dst / "model" / "weights").read_text() == "model/weights"
    assert not (dst / "embeddings").exists()
    assert json.loads((runs / exp.name / "shared.json").read_text())[0]["from"] == "tele-s1"

    pool_only = bench.Experiment("w", "ablations", {}, [(1, "tele-s1", "pool")])
    w_args = EpisodeArguments(output_dir=str(runs / "w"), model_name_or_path="m", collection="c", seed=1,
                              negative_mixing="weighted")
    bench.share_first_episode(pool_only, w_args, runs)
    assert sorted(p.name for p in (runs / "w" / "episode-1").iterdir()) == ["pool.jsonl", "pool.stats.json"]

    other = EpisodeArguments(output_dir=str(runs / "o"), model_name_or_path="m", collection="c", seed=2)
    assert bench.share_first_episode(bench.Experiment("o", "x", {}, [(1, "tele-s1", "pool")]), other, runs) == []
    assert not (runs / "o").exists()


def test_stage_times_and_bootstrap(bench):
    times = bench.stage_times({"episode-1/encode-corpus": 10.0, "episode-1/encode-train-queries": 1.5,
                               "episode-1/search-queries": 0.25, "episode-1/positives": 0.1,
                               "episode-1/mine": 2.0, "episode-1/train": 30.0, "bm25/train": 4.0, "analyze": 5.0})
    assert times == {"encode": 11.5, "search": 0.2, "lookahead vectors": 0.1, "mine": 2.0, "train": 30.0,
                     "bm25": 4.0, "analyze": 5.0}
    same = bench.paired_bootstrap([0.1] * 50)
    assert same["mean"] == pytest.approx(0.1) and same["ci95"] == pytest.approx([0.1, 0.1])
    mixed = bench.paired_bootstrap([1.0, -1.0] * 100, samples=2000)
    assert mixed["ci95"][0] < 0 < mixed["ci95"][1]
    assert 0.2 < mixed["p_le_0"] < 0.8


def test_per_query_scores_average_to_the_runner_metrics(bench, synthetic_dir, tmp_path):
    import random

    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.data.trec import write_run
    from tevatron_tele.evaluation.metrics import evaluate_collection

    collection = load_collection(synthetic_dir, split="test")
    rng = random.Random(0)
    ids = list(collection.corpus.ids)
    run = {q: [(d, float(200 - r)) for r, d in enumerate(rng.sample(ids, 150))] for q in collection.queries}
    for q in list(run)[:5]:  # put some positives on top so the measures are not all zero
        top = collection.positives(q)[0]
        run[q] = [(top, 1000.0)] + [(d, s) for d, s in run[q] if d != top]  # a docid once per query
    path = tmp_path / "run.trec"
    write_run(path, run, tag="t")
    per_query = bench.per_query_scores(path, collection)
    expected = evaluate_collection(run, collection)
    for m in bench.METRICS:
        values = list(per_query[m].values())
        assert sum(values) / len(values) == pytest.approx(expected[m])
    assert max(per_query["MRR@10"].values()) == 1.0


def test_subset_keeps_judged_passages(bench, synthetic_dir, tmp_path):
    from tevatron_tele.data.collections import load_collection

    out = bench.subset_collection(synthetic_dir, tmp_path / "sub", train_queries=5, test_queries=3, extra_docs=7)
    train, test = load_collection(out, split="train"), load_collection(out, split="test")
    assert len(train.queries) == 5 and len(test.queries) == 3
    judged = {d for c in (train, test) for q in c.qrels for d in c.qrels[q]}
    assert judged <= set(train.corpus.ids)
    assert len(train.corpus) == len(judged) + 7


@pytest.mark.slow
def test_tiny_study_end_to_end(bench, synthetic_dir, tiny_model_dir, tmp_path):
    """Headline, baselines (BM25 run given as a file) and ablations on the synthetic collection standing in
    for both collections, with a tiny BERT: every run finishes, sharing happens, the summary and export hold
    only what was run."""
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.data.trec import write_run

    data = tmp_path / "data"
    for name in (bench.MAIN, bench.TRANSFER):
        shutil.copytree(synthetic_dir, data / name)
    train = load_collection(data / bench.MAIN, split="train")
    ids = list(train.corpus.ids)
    fake_bm25 = tmp_path / "bm25.trec"  # any ranking will do: it stands in for Pyserini's
    write_run(fake_bm25, {q: [(d, float(-k)) for k, d in enumerate(ids[:60])] for q in train.queries}, tag="bm25")
    results = tmp_path / "results"
    bench.main(["--results", str(results), "--profile", "dry", "--only", "headline", "baselines", "ablations", "beyond",
                "--data", str(data), "--model", str(tiny_model_dir), "--no_bm25_baseline",
                "--bm25_train_run", str(fake_bm25), "--export", str(tmp_path / "out"),
                "--set", "num_episodes=2", "analysis_max_queries=10", "depth=30", "eval_depth=50",
                # a random tiny model scores every passage alike: a margin below the positive would empty
                # the pool, one above it removes only the negatives it already ranks over the positive
                "margin_alt=-0.01"])

    summary = json.loads((results / "summary.json").read_text())["dry"]
    runs = summary["runs"]
    margin = f"margin{summary['settings']['margin_alt']:g}"
    assert set(runs) == {"zero-shot", "tele-s1", "ance-s1", "bm25neg-s1", "tele-weighted-s1",
                         "tele-nomomentum-s1", "tele-nolookahead-s1", f"tele-{margin}-s1", f"ance-{margin}-s1",
                         "tele-forgotten-s1", "telebm25-s1"}
    head = summary["headline"]
    assert head["seeds"] == [1] and head["episode"] == 2
    row = head["collections"][bench.MAIN]["nDCG@10"]
    assert row["difference"]["mean"] == pytest.approx(row["tele"]["mean"] - row["ance"]["mean"])
    assert runs["tele-nomomentum-s1"]["shared"] == [{"episode": 1, "from": "tele-s1", "what": "episode"}]
    assert runs["tele-nolookahead-s1"]["shared"] == [{"episode": 1, "from": "ance-s1", "what": "episode"}]
    same = [(results / "dry" / "runs" / r / "episode-1" / "pool.jsonl").read_bytes()
            for r in ("tele-s1", "tele-weighted-s1")]
    assert same[0] == same[1]
    assert runs["bm25neg-s1"]["train_steps"] == {"1": bench.chain_steps(summary["settings"], len(train.queries))}
    # the per-setting table pairs tele-X with ance-X: the headline setting and the filter
    assert [p["setting"] for p in summary["pairs"]] == [f"{margin}-s1", "s1"]
    assert summary["pairs"][1]["difference"] == pytest.approx(row["difference"]["mean"])
    assert summary["pairs"][1]["bootstrap"]["mean"] == pytest.approx(row["difference"]["mean"])
    # each variant against plain Tele and ANCE of its seed, with what it changed in its pools
    variants = {v["run"]: v for v in summary["variants"]}
    assert set(variants) == {f"tele-{margin}-s1", f"ance-{margin}-s1", "tele-forgotten-s1", "telebm25-s1"}
    tele_f = variants[f"tele-{margin}-s1"]
    against = tele_f["against"]["ance-s1"][bench.MAIN]
    assert against["difference"] == pytest.approx(tele_f[bench.MAIN] - row["ance"]["mean"])
    assert against["bootstrap"]["mean"] == pytest.approx(against["difference"])
    stats = json.loads((results / "dry" / "runs" / f"tele-{margin}-s1" / "episode-1" / "pool.stats.json").read_text())
    ann = stats["positive_aware_filter"]["sources"]["ann"]
    assert tele_f["pool"]["1"]["removed ann"] == pytest.approx(ann["removed"] / ann["candidates"])
    assert "forgotten momentum" in variants["tele-forgotten-s1"]["pool"]["2"]
    assert runs["tele-forgotten-s1"]["shared"] == [{"episode": 1, "from": "tele-s1", "what": "episode"}]
    assert "bm25" in runs["telebm25-s1"]["pool_stats"]["1"]["sources"]
    # one probe, but for runs whose filter emptied some queries' pools (the analysis reads positives from pools)
    filtered = {f"tele-{margin}-s1", f"ance-{margin}-s1"}
    assert set(summary["probe_differs"]) <= filtered
    unfiltered = [r["probe"] for n, r in runs.items() if r.get("probe") and n not in filtered]
    assert len(unfiltered) > 5 and all({k: v for k, v in p.items() if k != "from"} ==
                                       {k: v for k, v in unfiltered[0].items() if k != "from"} for p in unfiltered)
    md = (results / "summary.md").read_text()
    assert "Headline" in md and "tele-weighted-s1" in md and "BM25 (Pyserini)" not in md
    with tarfile.open(tmp_path / "out" / "results.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("tele-s1/episode-2/eval.json") for n in names)
    assert not any("/model/" in n and not n.endswith("train_log.json") for n in names)
    assert (tmp_path / "out" / "summary.md").exists()
