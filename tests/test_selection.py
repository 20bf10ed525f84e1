"""The runner keeps the episode that is best on a dev split (episode 0 unless beaten), and says how it compares
with the start model and BM25 on the test split."""
from __future__ import annotations

import json
import os

import pytest
from test_episodes import _args, _run_cli

from tevatron_tele.data.collections import load_collection
from tevatron_tele.data.pools import read_pool
from tevatron_tele.data.synthetic import make_synthetic_collection
from tevatron_tele.data.trec import read_run
from tevatron_tele.evaluation.metrics import per_query_values
from tevatron_tele.evaluation.verdict import select_episode_guarded
from tevatron_tele.runner.workspace import RunFolder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared_positive_collection(tmp_path_factory):
    return make_synthetic_collection(tmp_path_factory.mktemp("shared") / "collection", seed=0, shared_positives=True)


@pytest.fixture(scope="module")
def selected_run(tmp_path_factory, shared_positive_collection, tiny_model_dir):
    out = tmp_path_factory.mktemp("select") / "run"
    proc = _run_cli(_args(shared_positive_collection, tiny_model_dir, out, num_episodes=2, dev_from_train=24,
                          analyze=True, baselines="bm25"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_dev_selection_best_link_and_verdict(selected_run, shared_positive_collection):
    out, stdout = selected_run
    folder = RunFolder(out)
    best = json.loads((out / "best.json").read_text())
    dev = {i: json.loads(folder.eval(i).read_text())["collection/dev-from-train"]["nDCG@10"] for i in range(3)}
    # the guarded rule (the default), recomputed from the dev rankings: a later episode replaces the kept one only
    # when its per-query gain is beyond noise
    qrels = load_collection(shared_positive_collection, "train").qrels
    values = {i: per_query_values(read_run(folder.ranking(i, "dev")), qrels, "nDCG@10") for i in range(3)}
    expected, tests = select_episode_guarded(values, seed=7)  # the run's seed (_args)
    assert best["selected"] == expected and best["dev"] == {str(i): v for i, v in dev.items()}
    assert best["selection"]["rule"] == "guarded"
    assert {int(e): t["replaced"] for e, t in best["selection"]["tests"].items()} == {
        e: t["replaced"] for e, t in tests.items()}
    assert os.readlink(out / "best") == f"episode-{expected}"
    assert f"verdict: {best['text']}" in stdout
    # the held-out queries are evaluated, never trained on
    pooled = {e.query_id for i in (1, 2) for e in read_pool(folder.pool(i))}
    held_out = {line.split()[0] for line in folder.ranking(0, "dev").read_text().splitlines()}
    assert len(held_out) == 24 and not held_out & pooled
    assert not held_out & set(best["per_query"]["start"]), "the verdict is on the test queries, not the dev ones"
    # BM25 on the test queries, computed once and reused by a later judgement
    assert "BM25" in best["vs"] and "BM25" in best["text"]
    report = (out / "report" / "report.md").read_text()
    assert report.split("## Verdict")[1].lstrip().startswith("- **run**:") and "BM25" in report


def test_bm25_baseline_is_computed_once(selected_run, shared_positive_collection, tiny_model_dir):
    out, _ = selected_run
    bm25 = out / "bm25" / "test.trec"
    before = bm25.stat().st_mtime_ns
    proc = _run_cli(_args(shared_positive_collection, tiny_model_dir, out, num_episodes=2, dev_from_train=24,
                          analyze=True, baselines="bm25"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert bm25.stat().st_mtime_ns == before


def test_harmful_training_keeps_the_start_and_says_so(selected_run, shared_positive_collection, tmp_path):
    """A far too high learning rate wrecks the trained model: the runner keeps episode 0 and its log says so."""
    good_start = RunFolder(selected_run[0]).model(2)
    out = tmp_path / "run"
    proc = _run_cli(_args(shared_positive_collection, good_start, out, num_episodes=1, dev_from_train=24,
                          learning_rate=1.0, refresh_steps=0, analyze=False))
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = json.loads((out / "best.json").read_text())
    assert best["dev"]["1"] < best["dev"]["0"], best["dev"]
    assert best["selected"] == 0 and os.readlink(out / "best") == "episode-0"
    assert best["text"].startswith("no episode beats the start on the dev split")
    assert "no episode beats the start" in proc.stderr  # the log line
