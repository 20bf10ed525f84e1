"""The episode runner's bookkeeping, without training: token-cache and base-cache keys, the mining step's
completion, and the positives its lookahead and stored scores use (QA collections promote answer passages)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

import tevatron_tele.runner.episodes as episodes  # the runner's own binding of mine_episode
from tevatron_tele.data.pools import PoolEntry, pool_stats_path, write_pool
from tevatron_tele.data.run_folder import RunLayout
from tevatron_tele.data.trec import write_run
from tevatron_tele.retrieval.embeddings import load_embeddings, save_embeddings
from tevatron_tele.runner.base_cache import base_cache_dir
from tevatron_tele.runner.config import EpisodeArguments
from tevatron_tele.runner.episodes import EpisodeRunner
from tevatron_tele.runner.launch import train_settings


def _args(collection, model, out, **overrides) -> EpisodeArguments:
    settings = dict(output_dir=str(out), model_name_or_path=str(model), collection=str(collection),
                    num_episodes=2, q_max_len=12, p_max_len=32, depth=10, sample=0, progress=False, device="cpu")
    settings.update(overrides)
    return EpisodeArguments(**settings)


def _keep_test_qrels(folder: Path, keep) -> None:
    path = folder / "qrels" / "test.tsv"
    header, *lines = path.read_text().splitlines()
    path.write_text("\n".join([header, *[line for n, line in enumerate(lines) if keep(n)]]) + "\n")


def test_query_token_caches_are_keyed_by_path_and_split(synthetic_dir, tiny_model_dir, tmp_path):
    """Evaluation collections whose folders share a name (and the training collection's name) each encode
    their own queries."""
    a, b = tmp_path / "a" / synthetic_dir.name, tmp_path / "b" / synthetic_dir.name
    for folder, keep in ((a, lambda n: n % 2 == 0), (b, lambda n: n % 2 == 1)):
        shutil.copytree(synthetic_dir, folder)
        _keep_test_qrels(folder, keep)
    runner = EpisodeRunner(_args(synthetic_dir, tiny_model_dir, tmp_path / "run", eval_collections=[str(a), str(b)],
                                 token_cache_dir=str(tmp_path / "cache")))
    names = list(runner.collections.evals)
    assert names == ["main", synthetic_dir.name, f"{synthetic_dir.name}-2"], "both folders are evaluated"
    collections = list(runner.collections.evals.values())
    assert len({c.name for c in collections}) == 1  # "<folder>/test" for all three: the name cannot be the key
    query_sets = [list(c.queries) for c in collections]
    assert len({tuple(q) for q in query_sets}) == 3
    for collection, queries in zip(collections, query_sets):
        assert runner.caches.get(collection, "queries").ids == queries, collection
    # the corpus is shared where the collection is the same, and the same cache is reused
    assert runner.caches.get(collections[0], "queries") is runner.caches.get(collections[0], "queries")
    train = runner.collections.train
    assert runner.caches.get(train, "queries").ids == list(train.queries)


def _base_cache(**overrides) -> Path:
    return base_cache_dir(_args("data/c", "model", "run", base_cache_dir="base", **overrides))


def test_base_cache_key_holds_every_input_of_episode_zero(tmp_path):
    plain = _base_cache()
    assert plain == _base_cache(learning_rate=1.0, seed=3, negatives="ann")  # not inputs of episode 0
    keys = {plain, _base_cache(encode_amp="bf16"), _base_cache(encode_amp="fp16"),
            _base_cache(passages="psgs.tsv"), _base_cache(passages="other/psgs.tsv"), _base_cache(q_max_len=13)}
    assert len(keys) == 6


def test_mining_step_is_complete_only_with_its_stats(tmp_path, monkeypatch, synthetic_dir, tiny_model_dir):
    """A pool left without its stats (a process killed between the two writes) is mined again."""
    runner = EpisodeRunner(_args(synthetic_dir, tiny_model_dir, tmp_path / "run", eval_split=""))
    runner.folder.open(runner.args)
    pool = runner.folder.pool(1)
    calls = []

    def mine(collection, out, **kwargs):
        calls.append(out)
        write_pool(out, [PoolEntry("q", "t", ["d1"], ["d2"], {"ann": ["d2"]})])

    monkeypatch.setattr(episodes, "mine_episode", mine)
    pool.parent.mkdir(parents=True)
    pool.write_text('{"query_id": "q", "query_text": "t", "positive_document_ids": ["d1"], '
                    '"negative_document_ids": ["d2"]}\n')
    runner.mine(1)
    assert calls == [pool] and pool_stats_path(pool).exists()
    runner.mine(1)
    assert calls == [pool], "a pool with its stats is complete"


# ---------------------------------------------------------------- QA: promoted positives

PASSAGES = {  # p5 holds q1's answer; q1 has no judged positive
    "p0": "red green", "p1": "the answer is lumo", "p2": "blue sky", "p3": "tall trees",
    "p4": "deep sea", "p5": "a zebra runs", "p6": "cold snow", "p7": "warm sand",
}


def _qa_collection(tmp_path) -> tuple[Path, Path]:
    passages = tmp_path / "psgs.tsv"
    passages.write_text("id\ttext\ttitle\n" + "".join(f"{d}\t{t}\t\n" for d, t in PASSAGES.items()))
    questions = [{"qid": "q0", "question": "what is the answer", "answers": ["lumo"],
                  "positive_ctxs": [{"passage_id": "p1", "text": PASSAGES["p1"]}]},
                 {"qid": "q1", "question": "what runs", "answers": ["zebra"], "positive_ctxs": []}]
    path = tmp_path / "qa-train.json"
    path.write_text(json.dumps(questions))
    return path, passages


def test_qa_promoted_positive_gets_lookahead_and_stored_scores(tmp_path, tiny_model_dir):
    """A QA query whose positive is promoted from an answer-bearing passage: its positive is ranked for
    lookahead, and the stored scores hold the pairs the forgetting analysis reads for it."""
    from tevatron_tele.evaluation.analysis import open_run, pairs_needed_by_episode, probe_from_run
    from tevatron_tele.retrieval.scoring import covers, load_score_table

    collection, passages = _qa_collection(tmp_path)
    runner = EpisodeRunner(_args(collection, tiny_model_dir, tmp_path / "run", passages=str(passages), eval_split="",
                                 analysis_probe_k=2))
    folder = runner.folder
    folder.open(runner.args)
    rng = np.random.default_rng(0)
    ids = list(PASSAGES)
    save_embeddings(folder.embeddings(1, "corpus"), rng.standard_normal((len(ids), 4)).astype(np.float32), ids)
    save_embeddings(folder.embeddings(1, "train-queries"), rng.standard_normal((2, 4)).astype(np.float32),
                    ["q0", "q1"])

    def ranked(*docs):
        return [(d, float(len(docs) - n)) for n, d in enumerate(docs)]

    # episode 0's ranking put p5 below the probe's top 2; pool 1 promoted it (it holds the answer)
    write_run(folder.ranking(0, "queries"), {"q0": ranked("p1", "p0", "p2"), "q1": ranked("p3", "p7", "p6", "p5")})
    write_pool(folder.pool(1), [PoolEntry("q0", "what is the answer", ["p1"], ["p0", "p2"], {"ann": ["p0", "p2"]}),
                                PoolEntry("q1", "what runs", ["p5"], ["p3", "p7"], {"ann": ["p3", "p7"]})])
    # episode 1 ranks q1's answer passage p5 again: pool 2 will take it as q1's positive
    write_run(folder.ranking(1, "queries"), {"q0": ranked("p0", "p1", "p4"), "q1": ranked("p6", "p5", "p2")})

    def mined():
        return episodes._mining_positives(folder, runner.args, runner.collections.train, 1)

    episodes._positive_embeddings(folder, 1, folder.embeddings(1, "corpus"), mined)
    _, rows = load_embeddings(folder.embeddings(1, "positives"))
    assert sorted(rows) == ["p1", "p5"], "the promoted positive needs a lookahead ranking"

    episodes._store_scores(folder, 1, folder.embeddings(1, "train-queries"), folder.embeddings(1, "corpus"),
                           mined, runner.args.analysis_probe_k)
    table = load_score_table(folder.scores(1))
    ws = open_run(folder.root)
    positives = ws.positives()
    assert positives["q1"] == ["p5"]
    negatives = {1: {e.query_id: e.negative_document_ids for e in ws.pools[1].values()}}
    needed = pairs_needed_by_episode(negatives, probe_from_run(ws, 2), positives)[1]
    assert "p5" in needed["q1"]
    assert covers(table, needed), "the analysis would encode again what the runner had stored"


def test_mining_positives_are_those_of_the_pool(tmp_path):
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.data.pools import read_pool
    from tevatron_tele.mining.tele import mine_episode, mining_positives

    path, passages = _qa_collection(tmp_path)
    collection = load_collection(path, passages=passages)
    run = {"q0": [("p0", 3.0), ("p1", 2.0)], "q1": [("p6", 3.0), ("p5", 2.0), ("p2", 1.0)]}
    positives = mining_positives(collection, query_run=run, depth=10)
    assert positives == {"q0": ["p1"], "q1": ["p5"]}
    mine_episode(collection, tmp_path / "pool.jsonl", query_run=run)
    assert {e.query_id: e.positive_document_ids for e in read_pool(tmp_path / "pool.jsonl")} == positives
    assert mining_positives(collection, query_run=run, depth=1)["q1"] == []  # p5 below the depth



def test_leftover_temporaries_are_removed_outside_finished_episodes(tmp_path, synthetic_dir, tiny_model_dir):
    """What a process killed mid-write left under a temporary name (`.tmp-*`) goes when the run is opened again;
    a DONE episode and the token caches (shared between runs) are not touched."""
    from tevatron_tele.runner.workspace import RunFolder

    folder = RunFolder(tmp_path / "run")
    args = _args(synthetic_dir, tiny_model_dir, folder.root, eval_split="")
    folder.open(args)
    folder.episode(1).mkdir()
    folder.done(1).write_text("{}")
    kept = [folder.episode(1) / ".tmp-eval.json-x" / "eval.json",
            folder.root / "token_cache" / ".tmp-c-x" / "tokens.npy"]
    gone = [folder.episode(2) / "embeddings" / ".tmp-corpus.npy-x" / "corpus.npy",
            folder.episode(2) / ".tmp-pool.jsonl-y" / "pool.jsonl",
            folder.root / ".tmp-manifest.json-z" / "manifest.json"]
    for path in kept + gone:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("trunc")
    (folder.episode(2) / "rankings").mkdir()
    (folder.episode(2) / "rankings" / ".tmp-test.trec-q").write_text("a stray file")
    gone.append(folder.episode(2) / "rankings" / ".tmp-test.trec-q")
    folder.open(args)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in gone)
    assert (folder.episode(2) / "embeddings").is_dir()  # only the temporaries go


def test_pad_to_max_length_reaches_current_tevatron_only(tmp_path, synthetic_dir):
    """Tevatron 0.1.0 always pads to the maximum length and has no such flag: the runner passes it to v2 only."""
    def data_settings(backend: str) -> dict:
        args = EpisodeArguments(output_dir=str(tmp_path / backend), model_name_or_path="m",
                                collection=str(synthetic_dir), backend=backend, pad_to_max_length=True)
        return train_settings(args, RunLayout(args.output_dir), 1, tmp_path / "cache", "cpu")[1]

    assert data_settings("v2")["pad_to_max_length"] is True
    assert "pad_to_max_length" not in data_settings("v1")
