"""Current Tevatron's own drivers on this project's files, typed as its users type them (make test-v2).

One short run (--backend v2, one episode, the tiny model on the synthetic collection) gives an episode folder;
`tevatron.retriever.driver.train` then trains on its `pool.jsonl` with the corpus `driver.export_corpus`
writes, and `driver.encode` + `driver.search` on its model folder rank the test queries as the run did.
Every driver runs in a subprocess of this interpreter (.venv-v2), offline.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from test_episodes import _args, _run_cli

from tevatron_tele.backends import installed_backend
from tevatron_tele.runner.workspace import RunFolder

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(installed_backend() != "v2", reason="needs current Tevatron (make install-v2)")]

Q_MAX_LEN, P_MAX_LEN = 12, 32  # the lengths the run trained and encoded with (test_episodes._args)
TOP_K = 10
# The run stores its embeddings as float16 (scores then move by up to ~3e-4 on this model) and writes scores with
# 6 decimals; Tevatron's are float32. Two documents closer than twice that may swap places legitimately.
SCORE_TOL = 5e-4
NEAR_TIE = 2 * SCORE_TOL


def _driver(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` with this interpreter, offline; fails the test unless it exits 0."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "WANDB_DISABLED": "true", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{module} {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def episode(tmp_path_factory, synthetic_dir, tiny_model_dir) -> RunFolder:
    out = tmp_path_factory.mktemp("upstream-drivers") / "run"
    proc = _run_cli(_args(synthetic_dir, tiny_model_dir, out, backend="v2", num_episodes=1, analyze=False))
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = RunFolder(out)
    assert folder.done(1).exists() and folder.pool(1).exists()
    return folder


@pytest.fixture(scope="module")
def work(episode, synthetic_dir) -> Path:
    """A folder with the exported corpus (`corpus.jsonl`) and the test queries in Tevatron's query format."""
    work = episode.root.parent / "upstream"
    work.mkdir()
    _driver("tevatron_tele.driver.export_corpus", ["--collection", str(synthetic_dir), "--tokenizer",
                                                   str(episode.model(1)), "--output", "corpus.jsonl",
                                                   "--progress", "false"], work)
    test_ids = {line.split("\t")[0] for line in (synthetic_dir / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    with open(work / "queries.jsonl", "w", encoding="utf-8") as f:
        for line in (synthetic_dir / "queries.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row["_id"] in test_ids:
                f.write(json.dumps({"query_id": row["_id"], "query_text": row["text"]}) + "\n")
    return work


def test_upstream_train_driver_trains_on_our_pool_and_corpus(episode, work):
    start = episode.model(1)
    proc = _driver("tevatron.retriever.driver.train", [
        "--model_name_or_path", str(start), "--output_dir", "trained",
        "--dataset_name", "json", "--dataset_path", str(episode.pool(1)),
        "--corpus_name", "json", "--corpus_path", "corpus.jsonl",
        "--train_group_size", "4", "--attn_implementation", "sdpa", "--use_cpu",
        "--query_max_len", str(Q_MAX_LEN), "--passage_max_len", str(P_MAX_LEN), "--pooling", "mean", "--normalize",
        "--temperature", "0.05", "--per_device_train_batch_size", "8", "--max_steps", "3", "--learning_rate", "1e-3",
        "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--seed", "7"], work)
    losses = [float(v) for v in _logged(proc.stdout + proc.stderr, "loss")]
    assert losses and all(np.isfinite(losses)), "the train driver logged no finite loss"
    before, after = load_file(str(start / "model.safetensors")), load_file(str(work / "trained" / "model.safetensors"))
    assert before.keys() == after.keys()
    assert all(np.isfinite(w).all() for w in after.values())
    assert any(not np.array_equal(before[k], after[k]) for k in before), "training on our pool changed no weight"


def _logged(log: str, key: str) -> list[str]:
    """The values of `key` in the trainer's logged dicts ({'loss': '1.69', ...})."""
    values = []
    for line in log.replace("\r", "\n").splitlines():
        start = line.find("{'loss'")
        if start >= 0:
            values.append(line[start:].split(f"'{key}': ", 1)[1].split(",", 1)[0].strip("'} "))
    return values


def _read_ours(path: Path) -> dict[str, list[tuple[str, float]]]:
    ranking: dict[str, list[tuple[str, float]]] = {}
    for line in path.read_text().splitlines():
        qid, _, docid, _, score, _ = line.split()
        ranking.setdefault(qid, []).append((docid, float(score)))
    return ranking


def _read_upstream(path: Path) -> dict[str, list[tuple[str, float]]]:
    ranking: dict[str, list[tuple[str, float]]] = {}
    for line in path.read_text().splitlines():
        qid, docid, score = line.split("\t")
        ranking.setdefault(qid, []).append((docid, float(score)))
    return ranking


def test_upstream_encode_and_search_rank_like_ours(episode, work):
    model = str(episode.model(1))
    common = ["--output_dir", "encode-tmp", "--model_name_or_path", model, "--dataset_name", "json",
              "--pooling", "mean", "--normalize", "--attn_implementation", "sdpa", "--use_cpu",
              "--per_device_eval_batch_size", "64", "--query_max_len", str(Q_MAX_LEN),
              "--passage_max_len", str(P_MAX_LEN)]
    _driver("tevatron.retriever.driver.encode", [*common, "--dataset_path", "corpus.jsonl",
                                                 "--encode_output_path", "corpus.pkl"], work)
    _driver("tevatron.retriever.driver.encode", [*common, "--dataset_path", "queries.jsonl", "--encode_is_query",
                                                 "--encode_output_path", "queries.pkl"], work)
    _driver("tevatron.retriever.driver.search", ["--query_reps", "queries.pkl", "--passage_reps", "corpus.pkl",
                                                 "--depth", "50", "--batch_size", "0", "--save_text",
                                                 "--save_ranking_to", "ranking.tsv", "--quiet"], work)
    # their query embeddings are ours (the run keeps its test queries' embeddings, in float16)
    with open(work / "queries.pkl", "rb") as f:
        reps, ids = pickle.load(f)
    ours = np.load(episode.embeddings(1, "queries-main").with_suffix(".npy")).astype(np.float32)
    our_ids = episode.embeddings(1, "queries-main").with_suffix(".ids").read_text().split()
    order = [our_ids.index(i) for i in ids]
    np.testing.assert_allclose(np.asarray(reps), ours[order], atol=SCORE_TOL)

    theirs, run = _read_upstream(work / "ranking.tsv"), _read_ours(episode.ranking(1, "test"))
    assert set(theirs) == set(run) == set(ids)
    untied = 0
    for qid, our_list in run.items():
        top_ours, top_theirs = dict(our_list[:TOP_K]), dict(theirs[qid][:TOP_K])
        shared = top_ours.keys() & top_theirs.keys()
        assert all(abs(top_ours[d] - top_theirs[d]) <= SCORE_TOL for d in shared), qid
        # a document clearly above the other side's cut is in the other side's top k
        for a, b, b_list in ((top_ours, top_theirs, theirs[qid]), (top_theirs, top_ours, our_list)):
            assert all(d in b for d, score in a.items() if score > b_list[TOP_K][1] + NEAR_TIE), qid
        if our_list[TOP_K - 1][1] - our_list[TOP_K][1] > NEAR_TIE:  # no near-tie at the cut: the same top k
            assert top_ours.keys() == top_theirs.keys(), f"{qid}: top {TOP_K} differs"
            untied += 1
    assert untied >= len(run) // 4, f"only {untied} of {len(run)} queries had no near-tie at rank {TOP_K}"
