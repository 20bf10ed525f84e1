"""The one definition of a run folder's paths (data.run_folder.RunLayout) and of its episodes."""
from pathlib import Path

from tevatron_tele.data.run_folder import RunLayout, episode_number
from tevatron_tele.evaluation.analysis import RunWorkspace
from tevatron_tele.runner.workspace import RunFolder


def test_episodes_are_the_episode_folders_only(tmp_path):
    layout = RunLayout(tmp_path / "run")
    assert layout.episodes() == []  # no folder yet
    for name in ("episode-10", "episode-2", "episode-0", "episode-x", "episode-3.tmp", "report", "bm25"):
        (layout.root / name).mkdir(parents=True)
    (layout.root / "episode-7").write_text("a file, not an episode")
    (layout.root / "best").symlink_to("episode-2")
    assert layout.episodes() == [0, 2, 10]  # numeric order, not name order
    assert [episode_number(n) for n in ("episode-4", "episode-", "episode-04x", "best")] == [4, None, None, None]


def test_paths_are_the_documented_layout(tmp_path):
    layout = RunLayout(tmp_path)
    rel = {k: str(p.relative_to(tmp_path)) for k, p in {
        "manifest": layout.manifest_path, "best": layout.best_json, "link": layout.best_link,
        "report": layout.report_dir, "bm25": layout.bm25_run("test"), "index": layout.bm25_index,
        "qrels": layout.qrels("scifact-test"), "model": layout.model(2), "emb": layout.embeddings(1, "corpus"),
        "ranking": layout.ranking(3, "queries"), "pool": layout.pool(1), "scores": layout.scores(1),
        "eval": layout.eval(0), "done": layout.done(4), "lock": layout.lock_path}.items()}
    assert rel == {"manifest": "manifest.json", "best": "best.json", "link": "best", "report": "report",
                   "bm25": "bm25/test.trec", "index": "bm25/index", "qrels": "qrels/scifact-test.qrels",
                   "model": "episode-2/model", "emb": "episode-1/embeddings/corpus",
                   "ranking": "episode-3/rankings/queries.trec", "pool": "episode-1/pool.jsonl",
                   "scores": "episode-1/scores.npz", "eval": "episode-0/eval.json", "done": "episode-4/DONE",
                   "lock": ".run.lock"}
    assert not layout.is_done(4)
    layout.done(4).parent.mkdir()
    layout.done(4).write_text("{}")
    assert layout.is_done(4)


def test_runner_and_analysis_share_the_layout(tmp_path):
    """RunFolder (runner) and RunWorkspace (analysis) name the same files: one definition."""
    folder, ws = RunFolder(tmp_path / "r"), RunWorkspace(tmp_path / "r", {}, [])
    assert isinstance(folder, RunLayout) and isinstance(ws.layout, RunLayout)
    assert ws.path == folder.root == Path(tmp_path / "r")
    assert ws.ranking_path(1) == folder.ranking(1, "queries") and ws.layout.scores(2) == folder.scores(2)
