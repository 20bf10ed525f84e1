"""The episode runner end to end on the synthetic collection: 3 short episodes, kill and resume,
refusal of a changed config."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tevatron_tele.data.pools import read_pool
from tevatron_tele.runner.config import EpisodeArguments
from tevatron_tele.runner.episodes import run_episodes
from tevatron_tele.runner.workspace import ConfigMismatchError, RunFolder

pytestmark = pytest.mark.slow


def _args(synthetic_dir: Path, model_dir: Path, out: Path, **overrides) -> EpisodeArguments:
    settings = dict(output_dir=str(out), model_name_or_path=str(model_dir), collection=str(synthetic_dir),
                    num_episodes=3, refresh_steps=4, num_train_epochs=1, train_n_passages=3,
                    per_device_train_batch_size=8, learning_rate=1e-3, q_max_len=12, p_max_len=32, depth=20,
                    sample=5, pooling="mean", normalize=True, temperature=0.05, eval_depth=50, seed=7,
                    progress=False, logging_steps=50, device="cpu", baselines="none",
                    # the paper's mining: the tiny random model scores its positives below most candidates, so
                    # the default filter would leave it almost nothing to train on
                    max_negative_ratio=None, train_positives="all")
    settings.update(overrides)
    return EpisodeArguments(**settings)


def _cli(args: EpisodeArguments) -> list[str]:
    flags = [sys.executable, "-m", "tevatron_tele.driver.episodes"]
    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
        if value is None and f.default is not None:
            flags += [f"--{f.name}", "none"]  # a number option turned off
        if value is None or value == []:
            continue
        flags += [f"--{f.name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return flags


def _run_cli(args: EpisodeArguments, **env) -> subprocess.CompletedProcess:
    # A fresh process per run: in-process runs would inherit torch's thread settings from other tests,
    # and a different thread count changes float sums, hence rankings.
    return subprocess.run(_cli(args), env={**os.environ, **env}, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, synthetic_dir, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("episodes") / "run"
    proc = _run_cli(_args(synthetic_dir, tiny_model_dir, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_three_episodes_leave_every_output(finished_run):
    folder = RunFolder(finished_run)
    for i in range(4):
        assert folder.done(i).exists(), f"episode {i} has no DONE marker"
        assert folder.eval(i).exists() and folder.ranking(i, "test").exists()
        assert folder.ranking(i, "queries").exists()
    for i in (1, 2, 3):
        assert (folder.model(i) / "tele_config.json").exists()
        assert (folder.episode(i) / "scores.npz").exists(), "the analysis reads stored scores, not a re-encoding"
        assert not list((folder.episode(i) / "embeddings").glob("corpus*")), "corpus embeddings should be removed"
    # episode 1 has no past to remember; from episode 2 the pool holds all three sources
    first = read_pool(folder.pool(1))
    assert {s for e in first for s in e.sources} == {"ann", "lookahead"}
    for i in (2, 3):
        entries = read_pool(folder.pool(i))
        assert {s for e in entries for s in e.sources} == {"ann", "lookahead", "momentum"}
        for e in entries:
            assert not set(e.negative_document_ids) & set(e.positive_document_ids)
    # momentum of episode 3 is the whole pool of episode 2
    pool2 = {e.query_id: e.negative_document_ids for e in read_pool(folder.pool(2))}
    for e in read_pool(folder.pool(3)):
        assert e.sources["momentum"] == pool2[e.query_id]
    manifest = json.loads(folder.manifest_path.read_text())
    assert manifest["config"]["negatives"] == "tele"
    assert {"torch", "transformers", "tevatron"} <= set(manifest["versions"])
    assert any(k.endswith("/train") for k in manifest["timings"])
    # quick refresh: early episodes stop at refresh_steps, the last one trains its full schedule
    logs = {i: json.loads((folder.model(i) / "train_log.json").read_text()) for i in (1, 2, 3)}
    assert logs[1]["global_step"] == 4 and logs[2]["global_step"] == 4
    assert logs[3]["global_step"] == logs[3]["max_steps"] > 4
    report = finished_run / "report"
    assert (report / "report.md").exists() and (report / "forgetting.png").exists()
    analysis = json.loads((report / "analysis.json").read_text())
    assert analysis["runs"][0]["scored_episodes"] == [1, 2, 3]
    # the data the plots draw (report.run_series of analysis.json): forgetting from episode 2 on, every
    # episode's metrics, and the pools' composition by source
    from tevatron_tele.evaluation.report import run_series

    series = run_series(analysis["runs"][0])
    assert sorted(series["own_pool"]) == sorted(series["probe"]) == [2, 3]
    assert all(0 <= v <= 1 for v in [*series["own_pool"].values(), *series["probe"].values()])
    assert sorted(series["ann_jaccard"]) == [1, 2, 3] and all(0 <= v <= 1 for v in series["ann_jaccard"].values())
    evals = {i: json.loads(folder.eval(i).read_text()) for i in range(4)}
    for name, values in series["metrics"].items():
        assert sorted(values) == [0, 1, 2, 3], name
    main = next(iter(evals[0]))
    assert series["metrics"][f"{main}/nDCG@10"] == {i: evals[i][main]["nDCG@10"] for i in range(4)}
    assert {i: set(c) for i, c in series["composition"].items()} == {
        1: {"ann", "lookahead"}, 2: {"ann", "lookahead", "momentum"}, 3: {"ann", "lookahead", "momentum"}}
    stats = {i: json.loads((folder.episode(i) / "pool.stats.json").read_text()) for i in (1, 2, 3)}
    for i, composition in series["composition"].items():
        for source, per_query in composition.items():
            assert per_query > 0 and per_query <= stats[i]["sources"][source]["mean_per_query"] + 1e-9
    assert "analyze" in manifest["timings"]


def test_reencoded_scores_equal_the_stored_ones(finished_run, tmp_path, monkeypatch):
    """An episode without stored scores is scored by encoding again, rounded to the run's embedding type, so its
    forgetting rates compare with those of episodes scored from the runner's (float16) embeddings."""
    import tevatron_tele.data.run_folder as run_folder
    import tevatron_tele.evaluation.analysis as analysis
    from tevatron_tele.retrieval.scoring import load_score_table

    ws = analysis.open_run(finished_run)
    assert ws.config["embedding_dtype"] == "float16"
    stored = {i: load_score_table(RunFolder(finished_run).scores(i)) for i in (1, 3)}
    pairs = {q: sorted(stored[1][q])[:12] for q in sorted(stored[1])[:6]}
    monkeypatch.setattr(run_folder, "SCORES_FILE", "not-stored.npz")
    scored = analysis.score_episodes(ws, pairs, tmp_path / "cache", episodes=[1, 3], progress=False)
    for i in (1, 3):
        diffs = [abs(scored[i][q][d] - stored[i][q][d]) for q, docs in pairs.items() for d in docs]
        assert len(diffs) > 30
        # float16 rounding moves a score by ~1e-3; a float32 re-encoding would differ by that much
        assert max(diffs) < 1e-5, (i, max(diffs))


def test_changed_config_is_refused(finished_run, synthetic_dir, tiny_model_dir):
    def files():  # the lock of the one process running in the folder is not part of the run
        return {p: p.stat().st_mtime_ns for p in finished_run.rglob("*") if p.is_file() and ".run.lock" not in p.name}

    before = files()
    with pytest.raises(ConfigMismatchError, match="learning_rate"):
        run_episodes(_args(synthetic_dir, tiny_model_dir, finished_run, learning_rate=5e-4))
    after = files()
    assert before == after, "a refused run must not touch the folder"


def test_rerun_of_finished_run_changes_nothing(finished_run, synthetic_dir, tiny_model_dir):
    pools = {i: RunFolder(finished_run).pool(i).read_bytes() for i in (1, 2, 3)}
    run_episodes(_args(synthetic_dir, tiny_model_dir, finished_run))
    assert pools == {i: RunFolder(finished_run).pool(i).read_bytes() for i in (1, 2, 3)}


def test_killed_run_resumes_to_the_same_result(finished_run, synthetic_dir, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    args = _args(synthetic_dir, tiny_model_dir, out)
    for kill_at in ("episode-2/mine", "episode-3/train@2"):
        proc = _run_cli(args, TELE_KILL_AT=kill_at)
        assert proc.returncode == -9, f"expected SIGKILL at {kill_at}, got {proc.returncode}: {proc.stderr[-2000:]}"
    folder = RunFolder(out)
    assert folder.done(1).exists() and not folder.done(3).exists()
    proc = _run_cli(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = RunFolder(finished_run)
    for i in (1, 2, 3):
        assert folder.pool(i).read_bytes() == reference.pool(i).read_bytes(), f"pool of episode {i} differs"
    assert json.loads(folder.eval(3).read_text()) == json.loads(reference.eval(3).read_text())
    manifest = json.loads(folder.manifest_path.read_text())
    assert len(manifest["resumed"]) == 2


def test_episode_trained_by_two_processes(synthetic_dir, tiny_model_dir, tmp_path):
    """--train_nproc 2 trains through torchrun (gloo on CPU) with negatives shared across processes."""
    out = tmp_path / "run"
    run_episodes(_args(synthetic_dir, tiny_model_dir, out, num_episodes=1, train_nproc=2,
                       episode_train_n_passages="4", analyze=False))
    folder = RunFolder(out)
    assert folder.done(1).exists()
    log = json.loads((folder.model(1) / "train_log.json").read_text())
    # 120 training queries, 2 processes x 8 queries per step -> 7 full steps in one epoch
    assert log["global_step"] == 7


def test_per_episode_group_sizes_are_checked(synthetic_dir, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="needs 3 values"):
        _args(synthetic_dir, tiny_model_dir, tmp_path / "run", episode_train_n_passages="4,8")


# ---------------------------------------------------------------- the recipe's edges, through the runner
# Short runs (2 episodes of a few steps, in-process) that share episode 0 through --base_cache_dir.

def _short_args(synthetic_dir, model_dir, out, shared, **overrides) -> EpisodeArguments:
    settings = dict(num_episodes=2, refresh_steps=2, num_train_epochs=0.2, depth=10, sample=0, eval_split="",
                    analyze=False, embedding_dtype="float32", base_cache_dir=str(shared / "base"),
                    token_cache_dir=str(shared / "token_cache"))
    settings.update(overrides)
    return _args(synthetic_dir, model_dir, out, **settings)


def _run_recording_starts(args, monkeypatch) -> list[str]:
    """Run in this process; the model each episode's training started from."""
    import tevatron_tele.runner.launch as launch  # the runner's own binding of train

    starts, train = [], launch.train

    def recording_train(model_args, *rest, **kwargs):
        starts.append(str(model_args.model_name_or_path))
        return train(model_args, *rest, **kwargs)

    monkeypatch.setattr(launch, "train", recording_train)
    run_episodes(args)
    monkeypatch.undo()
    return starts


def _ann_from(ranking: Path, collection, depth: int) -> dict[str, list[str]]:
    """The ANN negatives a ranking gives with --sample 0: its top `depth` minus the query's positives."""
    from tevatron_tele.data.trec import read_run

    return {q: [d for d, _ in ranked[:depth] if d not in collection.positives(q)] for q, ranked in
            read_run(ranking).items() if collection.positives(q)}


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="module")
def train_collection(synthetic_dir):
    from tevatron_tele.data.collections import load_collection

    return load_collection(synthetic_dir, "train")


def test_tele_pools_from_the_previous_model_base_starts_and_passage_encoder_lookahead(
        synthetic_dir, tiny_model_dir, tmp_path, shared, train_collection, monkeypatch):
    """Pool i's ANN negatives come from ranking i-1 (not 0, not i); every episode trains from the base model;
    the lookahead queries are the passage encoder's vectors of the positives (untied encoders differ)."""
    import numpy as np

    from tevatron_tele.backends import load_encoder
    from tevatron_tele.data.token_cache import corpus_token_cache
    from tevatron_tele.data.trec import read_run
    from tevatron_tele.retrieval.embeddings import load_embeddings
    from tevatron_tele.retrieval.encode import encode_texts

    out = tmp_path / "run"
    args = _short_args(synthetic_dir, tiny_model_dir, out, shared, untie_encoder=True, keep_embeddings=True)
    starts = _run_recording_starts(args, monkeypatch)
    assert starts == [str(tiny_model_dir)] * 2, "every episode starts from the base model"
    folder = RunFolder(out)
    ann = {i: _ann_from(folder.ranking(i, "queries"), train_collection, 10) for i in (0, 1, 2)}
    for i in (1, 2):
        pool = {e.query_id: e.sources["ann"] for e in read_pool(folder.pool(i))}
        assert pool == {q: ann[i - 1][q] for q in pool} and len(pool) > 100
        for other in {0, 1, 2} - {i - 1}:
            assert sum(pool[q] != ann[other][q] for q in pool) > len(pool) // 4, (i, other)
    # lookahead of pool 2: episode 1's passage-encoder vectors of the positives, i.e. rows of its corpus encoding
    corpus, corpus_ids = load_embeddings(folder.embeddings(1, "corpus"))
    positives, positive_ids = load_embeddings(folder.embeddings(1, "positives"))
    rows = [corpus_ids.index(d) for d in positive_ids]
    assert np.array_equal(positives, corpus[rows])
    assert (folder.model(1) / "query_model").is_dir()
    model, tok = load_encoder(folder.model(1), "cpu")
    cache = corpus_token_cache(train_collection, tok, args.p_max_len, shared / "token_cache")
    as_queries = encode_texts(model, tok, cache, positive_ids, is_query=True, max_len=args.p_max_len, progress=False)
    assert np.abs(as_queries - positives).max() > 1e-2, "the query encoder would give other vectors"
    lookahead = read_run(folder.ranking(1, "positives"))
    assert all(lookahead[d][0][0] == d for d in positive_ids)  # a normalized passage vector finds itself first
    pool2 = {e.query_id: e for e in read_pool(folder.pool(2))}
    for q, e in pool2.items():
        first = train_collection.positives(q)[0]
        assert e.sources["lookahead"] == [d for d, _ in lookahead[first][:10] if d not in e.positive_document_ids]


def test_ann_recipe_and_continued_training(synthetic_dir, tiny_model_dir, tmp_path, shared, train_collection,
                                           monkeypatch):
    """--negatives ann: ANN negatives only, no lookahead ranking; --continue_training: episode i from model i-1."""
    out = tmp_path / "run"
    starts = _run_recording_starts(_short_args(synthetic_dir, tiny_model_dir, out, shared, negatives="ann",
                                               continue_training=True), monkeypatch)
    folder = RunFolder(out)
    assert starts == [str(tiny_model_dir), str(folder.model(1))]
    for i in (1, 2):
        entries = read_pool(folder.pool(i))
        assert {s for e in entries for s in e.sources} == {"ann"}
        assert {e.query_id: e.sources["ann"] for e in entries} == {
            q: d for q, d in _ann_from(folder.ranking(i - 1, "queries"), train_collection, 10).items()
            if q in {e.query_id for e in entries}}
    # (episode 0 comes from the shared base cache, which a lookahead run may have made)
    assert not folder.ranking(1, "positives").exists(), "no lookahead ranking without the lookahead source"


@pytest.mark.parametrize("recipe", ["bm25", "ann+bm25"])
def test_bm25_recipes(recipe, synthetic_dir, tiny_model_dir, tmp_path, shared, train_collection, pyserini):
    """--negatives bm25: the same BM25 negatives every episode; ann+bm25: both sources, ANN from ranking i-1."""
    from tevatron_tele.data.trec import read_run

    out = tmp_path / "run"
    run_episodes(_short_args(synthetic_dir, tiny_model_dir, out, shared, negatives=recipe))
    folder = RunFolder(out)
    bm25 = read_run(out / "bm25" / "train.trec")
    expected_bm25 = {q: [d for d, _ in r[:10] if d not in train_collection.positives(q)] for q, r in bm25.items()}
    pools = {i: read_pool(folder.pool(i)) for i in (1, 2)}
    for i, entries in pools.items():
        assert {s for e in entries for s in e.sources} == set(recipe.split("+"))
        for e in entries:
            assert e.sources["bm25"] == expected_bm25[e.query_id]
        if recipe == "ann+bm25":
            ann = _ann_from(folder.ranking(i - 1, "queries"), train_collection, 10)
            assert all(e.sources["ann"] == ann[e.query_id] for e in entries)
            assert all(e.negative_document_ids == e.sources["ann"] + e.sources["bm25"] for e in entries)
    if recipe == "bm25":
        assert [e.to_json() for e in pools[1]] == [e.to_json() for e in pools[2]]


# ---------------------------------------------------------------- faults beyond kill -9

def _files(folder: RunFolder, episodes) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for i in episodes for p in sorted(folder.episode(i).rglob("*"))
            if p.is_file()}


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-*") if "token_cache" not in p.relative_to(root).parts]


def test_full_disk_and_truncated_temporaries_recover(synthetic_dir, tiny_model_dir, tmp_path, shared, monkeypatch):
    """A full disk in the middle of a write (OSError ENOSPC: a pool's lines, an embedding file's bytes), and the
    truncated files a crash leaves under temporary names: the rerun finishes the run as an uninterrupted one
    would, and rewrites nothing of the episodes already done."""
    import errno
    import io

    import numpy as np

    import tevatron_tele.data.pools as pools

    reference = RunFolder(tmp_path / "reference")
    run_episodes(_short_args(synthetic_dir, tiny_model_dir, reference.root, shared))
    folder = RunFolder(tmp_path / "run")
    args = _short_args(synthetic_dir, tiny_model_dir, folder.root, shared)

    def full_disk():
        return OSError(errno.ENOSPC, "No space left on device")

    # 1. the disk fills while pool 2 is written, after its first lines
    to_json, lines = pools.PoolEntry.to_json, []

    def filling(entry):
        if folder.done(1).exists():
            if len(lines) == 5:
                raise full_disk()
            lines.append(entry.query_id)
        return to_json(entry)

    with monkeypatch.context() as m:
        m.setattr(pools.PoolEntry, "to_json", filling)
        with pytest.raises(OSError) as failed:
            run_episodes(args)
    assert failed.value.errno == errno.ENOSPC and lines
    assert folder.done(1).exists() and not folder.pool(2).exists() and not _temporaries(folder.root)
    done = _files(folder, (0, 1))

    # 2. the disk fills half-way through episode 2's corpus embeddings (after its training)
    save = np.save

    def half_save(file, array, *a, **kw):
        name = Path(str(getattr(file, "name", file)))
        if "episode-2" in name.parts and name.name == "corpus.npy":
            buffer = io.BytesIO()
            save(buffer, array, *a, **kw)
            file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            raise full_disk()
        return save(file, array, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(np, "save", half_save)
        with pytest.raises(OSError, match="No space left"):
            run_episodes(args)
    assert (folder.model(2) / "train_log.json").exists() and not folder.done(2).exists()
    assert not (folder.episode(2) / "embeddings" / "corpus.npy").exists() and not _temporaries(folder.root)

    # 3. a crash (kill -9, power loss) mid-write leaves truncated files under the temporary names atomic writes use
    planted = {folder.episode(2) / "embeddings" / ".tmp-corpus.npy-crash" / "corpus.npy": b"\x93NUMPY\x01\x00v",
               folder.episode(2) / "rankings" / ".tmp-queries.trec-crash" / "queries.trec": b"q1 Q0 d1 1 0.5 ep",
               folder.root / ".tmp-manifest.json-crash" / "manifest.json": b'{"config": {"outp'}
    for path, data in planted.items():
        path.parent.mkdir(parents=True)
        path.write_bytes(data)

    run_episodes(args)
    assert folder.done(2).exists() and not _temporaries(folder.root)
    assert _files(folder, (0, 1)) == done, "an episode already done was rewritten"
    for i in (1, 2):
        assert folder.pool(i).read_bytes() == reference.pool(i).read_bytes(), i
        assert folder.ranking(i, "queries").read_bytes() == reference.ranking(i, "queries").read_bytes(), i
    assert len(json.loads(folder.manifest_path.read_text())["resumed"]) == 2
