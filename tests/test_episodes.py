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
                    progress=False, logging_steps=50, device="cpu")
    settings.update(overrides)
    return EpisodeArguments(**settings)


def _cli(args: EpisodeArguments) -> list[str]:
    flags = [sys.executable, "-m", "tevatron_tele.driver.episodes"]
    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
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
        assert folder.is_done(i), f"episode {i} has no DONE marker"
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
    assert (report / "report.md").exists() and (report / "forgetting.png").stat().st_size > 5000
    analysis = json.loads((report / "analysis.json").read_text())
    assert analysis["runs"][0]["scored_episodes"] == [1, 2, 3]
    assert "analyze" in manifest["timings"]


def test_reencoded_scores_equal_the_stored_ones(finished_run, tmp_path, monkeypatch):
    """An episode without stored scores is scored by encoding again, rounded to the run's embedding type, so its
    forgetting rates compare with those of episodes scored from the runner's (float16) embeddings."""
    import tevatron_tele.evaluation.analysis as analysis
    from tevatron_tele.evaluation.scoring import load_score_table

    ws = analysis.open_run(finished_run)
    assert ws.config["embedding_dtype"] == "float16"
    stored = {i: load_score_table(RunFolder(finished_run).episode(i) / "scores.npz") for i in (1, 3)}
    pairs = {q: sorted(stored[1][q])[:12] for q in sorted(stored[1])[:6]}
    monkeypatch.setattr(analysis, "SCORES_FILE", "not-stored.npz")
    scored = analysis.score_episodes(ws, pairs, tmp_path / "cache", episodes=[1, 3], progress=False)
    for i in (1, 3):
        diffs = [abs(scored[i][q][d] - stored[i][q][d]) for q, docs in pairs.items() for d in docs]
        assert len(diffs) > 30
        # float16 rounding moves a score by ~1e-3; a float32 re-encoding would differ by that much
        assert max(diffs) < 1e-5, (i, max(diffs))


def test_changed_config_is_refused(finished_run, synthetic_dir, tiny_model_dir):
    before = {p: p.stat().st_mtime_ns for p in finished_run.rglob("*") if p.is_file()}
    with pytest.raises(ConfigMismatchError, match="learning_rate"):
        run_episodes(_args(synthetic_dir, tiny_model_dir, finished_run, learning_rate=5e-4))
    after = {p: p.stat().st_mtime_ns for p in finished_run.rglob("*") if p.is_file()}
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
    assert folder.is_done(1) and not folder.is_done(3)
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
    assert folder.is_done(1)
    log = json.loads((folder.model(1) / "train_log.json").read_text())
    # 120 training queries, 2 processes x 8 queries per step -> 7 full steps in one epoch
    assert log["global_step"] == 7


def test_per_episode_group_sizes_are_checked(synthetic_dir, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="needs 3 values"):
        _args(synthetic_dir, tiny_model_dir, tmp_path / "run", episode_train_n_passages="4,8")
