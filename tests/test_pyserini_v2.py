"""Pyserini in current Tevatron's environment (`make install-v2`): the runner with --backend v2 mines BM25 negatives
and compares its kept episode with the BM25 baseline, and Pyserini's own trec_eval, started as a user types it
(only the Java start-up hook that `make install-v2` installs gives it Java 21), agrees with the run's figures."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_same_4_decimals, pyserini_trec_eval
from test_episodes import _args, _run_cli

from tevatron_tele.backends import installed_backend
from tevatron_tele.data.pools import read_pool
from tevatron_tele.data.trec import read_run
from tevatron_tele.evaluation.metrics import evaluate_run
from tevatron_tele.retrieval import java
from tevatron_tele.runner.workspace import RunFolder

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(installed_backend() != "v2", reason="needs current Tevatron (make install-v2)")]


@pytest.fixture(scope="module")
def bm25_v2_run(pyserini, tmp_path_factory, synthetic_dir, tiny_model_dir):
    """One episode on current Tevatron trained on BM25 negatives, judged against the BM25 baseline."""
    out = tmp_path_factory.mktemp("pyserini-v2") / "run"
    proc = _run_cli(_args(synthetic_dir, tiny_model_dir, out, backend="v2", negatives="bm25", baselines="bm25",
                          num_episodes=1, analyze=False))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return RunFolder(out)


def test_hook_is_installed_in_the_v2_environment():
    assert java.hook_installed(), f"no Java start-up hook in {java.site_packages()}: run `make install-v2`"


def test_bm25_negatives_and_baseline_on_current_tevatron(bm25_v2_run, synthetic_dir):
    folder = bm25_v2_run
    assert json.loads((folder.model(1) / "tele_config.json").read_text())["backend"] == "v2"
    entries = read_pool(folder.pool(1))
    assert entries and {s for e in entries for s in e.sources} == {"bm25"}
    best = json.loads((folder.root / "best.json").read_text())
    assert "BM25" in best["vs"] and "BM25" in best["text"], best["text"]
    # the baseline's per-query figures are the BM25 run's, as our evaluator scores RUN/bm25/test.trec
    from tevatron_tele.data.collections import load_collection

    qrels = load_collection(synthetic_dir, "test").qrels
    bm25_run = read_run(folder.root / "bm25" / "test.trec")
    ours = evaluate_run(bm25_run, qrels, ["nDCG@10", "R@100"])
    assert np.isclose(np.mean(list(best["per_query"]["BM25"].values())), ours["nDCG@10"])
    assert 0 < ours["nDCG@10"] <= 1


def test_pyserini_trec_eval_equals_the_runs_figures(bm25_v2_run, synthetic_dir, tmp_path):
    """`python -m pyserini.eval.trec_eval -c -m ndcg_cut.10 RUN/qrels/... RUN` from .venv-v2 in a plain
    environment equals eval.json for the trained episode and our evaluator for the BM25 baseline's run."""
    from tevatron_tele.data.collections import load_collection

    folder = bm25_v2_run
    qrels = folder.root / "qrels" / f"{synthetic_dir.name}-test.qrels"
    eval_json = json.loads(folder.eval(1).read_text())[f"{synthetic_dir.name}/test"]
    assert_same_4_decimals(pyserini_trec_eval(qrels, folder.ranking(1, "test"), tmp_path), eval_json)
    bm25_path = folder.root / "bm25" / "test.trec"
    ours = evaluate_run(read_run(bm25_path), load_collection(synthetic_dir, "test").qrels, ["nDCG@10", "R@100"])
    assert_same_4_decimals(pyserini_trec_eval(qrels, bm25_path, tmp_path), ours)
