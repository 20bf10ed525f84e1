"""Pyserini's own commands in the environment `make install` builds, started the way a user starts them: a fresh
`python -m pyserini...` with no JAVA_HOME and without our `ensure_pyserini()`, so only the start-up hook that
`make install` puts into site-packages can give them Java 21. Their figures must equal the package's own
(`tevatron_tele.evaluation.metrics`) on SciFact, on qrels the package exports (`--write_qrels`, and the
runner's RUN/qrels/<collection>-<split>.qrels)."""
from __future__ import annotations

import importlib.util
import json
import re
import sys

import numpy as np
import pytest
from conftest import assert_same_4_decimals, plain_env, pyserini_trec_eval, run_python

from tevatron_tele.retrieval import java

if importlib.util.find_spec("pyserini") is None or importlib.util.find_spec("jnius_config") is None:
    pytest.skip("Pyserini is not installed (make install)", allow_module_level=True)

# ---- the hook, as installed ---------------------------------------------------------------------------

def test_hook_is_installed():
    assert java.hook_installed(), (
        f"the Java start-up hook for Pyserini is not installed (or is outdated) in {java.site_packages()}: "
        "run `make install` (or `python -m tevatron_tele.retrieval.java --install-hook`)")


_PROBE = """
import json, os, sys
before = sorted(m for m in ("jnius_config", "jnius", "pyserini", "tevatron_tele") if m in sys.modules)
import jnius_config
jnius_config.add_options("--add-modules=jdk.incubator.vector", "-Xss4m")
print(json.dumps({"before": before, "java_home": os.environ.get("JAVA_HOME"),
                  "path0": os.environ.get("PATH", "").split(os.pathsep)[0], "options": jnius_config.options}))
"""


def test_plain_interpreter_gets_java_21_only_through_the_hook(tmp_path):
    home = java.find_java(environ=plain_env())  # what the hook must pick in a plain environment
    probe = json.loads(run_python(["-c", _PROBE], tmp_path).stdout)
    assert probe["before"] == [], "the hook imports nothing at start-up"
    assert probe["java_home"] == str(home) and java.java_major(home) >= java.MIN_JAVA
    assert probe["path0"] == str(home / "bin")  # pyserini's trec_eval runs the first `java` on PATH
    vector = "--add-modules=jdk.incubator.vector"
    assert probe["options"] == (["-Xss4m"] if not java.has_module(home, java.VECTOR_MODULE) else [vector, "-Xss4m"])
    # the same probe with the hook turned off: nothing sets JAVA_HOME, so the environment above was plain
    off = json.loads(run_python(["-c", _PROBE], tmp_path, **{java.HOOK_ENV: "0"}).stdout)
    assert off["java_home"] is None and vector in off["options"]


def test_install_hook_is_idempotent(tmp_path):
    written = java.install_hook(tmp_path)
    assert {p.name for p in written} == {f"{java.HOOK_NAME}.py", f"{java.HOOK_NAME}.pth",
                                         f"{java.HOOK_NAME}.{sys.implementation.cache_tag}.pyc"}
    assert (tmp_path / f"{java.HOOK_NAME}.pth").read_text() == f"import {java.HOOK_NAME}\n"
    assert java.install_hook(tmp_path) == [] and java.hook_installed(tmp_path)
    assert len(java.uninstall_hook(tmp_path)) == 3 and not any(tmp_path.rglob(f"{java.HOOK_NAME}*"))


# ---- their figures against ours on SciFact ------------------------------------------------------------

def _synthetic_run(collection, seed: int = 0) -> dict[str, list[tuple[str, float]]]:
    """Each judged query's relevant passages among 60 random ones, scores with many ties (1 decimal); a tenth of
    the queries left out (trec_eval -c scores them 0)."""
    rng = np.random.default_rng(seed)
    ids = collection.corpus.ids
    run = {}
    for n, (qid, docs) in enumerate(sorted(collection.qrels.items())):
        if n % 10 == 0:
            continue
        picked = list(dict.fromkeys([*docs, *(ids[i] for i in rng.choice(len(ids), 60, replace=False))]))
        scores = np.round(rng.random(len(picked)), 1)
        run[qid] = sorted(zip(picked, scores.tolist()), key=lambda ds: -ds[1])
    return run


def test_runner_qrels_and_ranking_give_eval_json_through_trec_eval(scifact_dir, tmp_path, monkeypatch):
    """What the issue's "Done when" asks: `python -m pyserini.eval.trec_eval -c -m ndcg_cut.10
    RUN/qrels/scifact-test.qrels RUN/episode-1/rankings/test.trec` equals RUN/episode-1/eval.json. The runner's
    evaluation step runs as in a real run, on a ranking put where its search step writes one (no model is needed:
    encoding and search are stubbed)."""
    from tevatron_tele.data.trec import read_run, write_run
    from tevatron_tele.runner import episodes
    from tevatron_tele.runner.config import EpisodeArguments
    from tevatron_tele.runner.episodes import EpisodeRunner

    run_dir = tmp_path / "run"
    runner = EpisodeRunner(EpisodeArguments(output_dir=str(run_dir), model_name_or_path=str(tmp_path / "model"),
                                            collection=str(scifact_dir), device="cpu", progress=False))
    ranking = runner.folder.ranking(1, "test")
    write_run(ranking, _synthetic_run(runner.collections.evals["main"]))
    monkeypatch.setattr(runner, "embed", lambda *a, **k: tmp_path / "no-embeddings")
    monkeypatch.setattr(episodes, "_search", lambda *a, **k: ranking)
    runner.evaluate(1)

    qrels = run_dir / "qrels" / f"{scifact_dir.name}-test.qrels"
    lines = qrels.read_text().splitlines()
    assert lines and all(re.fullmatch(r"\S+ 0 \S+ \d+", line) for line in lines)
    assert len(lines) == sum(map(len, runner.collections.evals["main"].qrels.values()))
    eval_json = json.loads(runner.folder.eval(1).read_text())["scifact/test"]
    assert_same_4_decimals(pyserini_trec_eval(qrels, ranking, tmp_path), eval_json)
    assert eval_json["num_ranked_queries"] < eval_json["num_judged_queries"]  # -c mattered

    # written once: a later episode's evaluation leaves it as it is
    mtime = qrels.stat().st_mtime_ns
    write_run(runner.folder.ranking(2, "test"), read_run(ranking))
    monkeypatch.setattr(episodes, "_search", lambda *a, **k: runner.folder.ranking(2, "test"))
    runner.evaluate(2)
    assert qrels.stat().st_mtime_ns == mtime and runner.folder.eval(2).exists()


@pytest.fixture(scope="module")
def lucene_commands(scifact_dir, tmp_path_factory):
    """SciFact indexed by `python -m pyserini.index.lucene` (the documents our bm25 helpers index) and searched by
    `python -m pyserini.search.lucene`, both in plain interpreters."""
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.retrieval.bm25 import write_index_docs

    work = tmp_path_factory.mktemp("pyserini-commands")
    collection = load_collection(scifact_dir, "test")
    write_index_docs(collection.corpus, work / "docs")
    run_python(["-m", "pyserini.index.lucene", "-collection", "JsonCollection", "-generator",
                "DefaultLuceneDocumentGenerator", "-input", str(work / "docs"), "-index", str(work / "index"),
                "-threads", "1", "-storePositions", "-storeDocvectors", "-storeRaw"], work)
    topics = work / "topics.tsv"
    topics.write_text("".join(f"{q}\t{' '.join(t.split())}\n" for q, t in collection.queries.items()),
                      encoding="utf-8")
    run = work / "bm25.trec"
    run_python(["-m", "pyserini.search.lucene", "--index", str(work / "index"), "--topics", str(topics),
                "--output", str(run), "--bm25", "--hits", "1000", "--threads", "1"], work)
    return collection, work, run


@pytest.mark.slow
def test_lucene_commands_give_the_bm25_figure_and_trec_eval_agrees(lucene_commands, scifact_dir):
    from tevatron_tele.data.trec import read_run
    from tevatron_tele.driver.evaluate import main as evaluate_main
    from tevatron_tele.evaluation.metrics import evaluate_run

    collection, work, run_path = lucene_commands
    run = read_run(run_path)
    assert set(run) == set(collection.queries) and max(map(len, run.values())) == 1000
    ours = evaluate_run(run, collection.qrels, ["nDCG@10", "R@100"])
    # Pyserini's BEIR BM25 flat figures for SciFact, which the package's own bm25 helpers give too (test_bm25.py)
    assert (round(ours["nDCG@10"], 4), round(ours["R@100"], 4)) == (0.6789, 0.9253)
    # the qrels as `python -m tevatron_tele.driver.evaluate --write_qrels` exports them
    qrels = work / "scifact-test.qrels"
    exported = evaluate_main(["--collection", str(scifact_dir), "--split", "test", "--write_qrels", str(qrels)])
    assert exported["num_queries"] == len(collection.qrels)
    assert_same_4_decimals(pyserini_trec_eval(qrels, run_path, work), ours)
