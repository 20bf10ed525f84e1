"""The one definition of a run folder's paths (data.run_folder.RunLayout) and of its episodes, and the step
contract of the runner's own outputs: fingerprinted when written, refused when changed, collections by content."""
import json
import shutil
from pathlib import Path

import pytest

from tevatron_tele.cli import is_input_error
from tevatron_tele.data.outputs import OutputMismatchError
from tevatron_tele.data.run_folder import RunLayout, episode_number
from tevatron_tele.evaluation.analysis import RunWorkspace
from tevatron_tele.runner import episodes
from tevatron_tele.runner.config import EpisodeArguments
from tevatron_tele.runner.episodes import EpisodeRunner
from tevatron_tele.runner.workspace import ConfigMismatchError, RunFolder


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
    assert not layout.done(4).exists()
    layout.done(4).parent.mkdir()
    layout.done(4).write_text("{}")
    assert layout.done(4).exists()


def test_runner_and_analysis_share_the_layout(tmp_path):
    """RunFolder (runner) and RunWorkspace (analysis) name the same files: one definition."""
    folder, ws = RunFolder(tmp_path / "r"), RunWorkspace(tmp_path / "r", {}, [])
    assert isinstance(folder, RunLayout) and isinstance(ws.layout, RunLayout)
    assert ws.path == folder.root == Path(tmp_path / "r")
    assert ws.ranking_path(1) == folder.ranking(1, "queries") and ws.layout.scores(2) == folder.scores(2)


# ---- the runner's own steps carry the step contract (issue 19 items 1 and 4) ----

def _episode_args(collection, model, out, **overrides):
    settings = dict(output_dir=str(out), model_name_or_path=str(model), collection=str(collection), num_episodes=1,
                    q_max_len=12, p_max_len=32, depth=10, sample=0, progress=False, device="cpu", analyze=False,
                    # the paper's mining: the default filter would leave the tiny random model almost no pool
                    max_negative_ratio=None, train_positives="all")
    settings.update(overrides)
    return EpisodeArguments(**settings)


def _opened(tmp_path) -> RunFolder:

    folder = RunFolder(tmp_path / "run")
    folder.open(EpisodeArguments(output_dir=str(folder.root), model_name_or_path="m", collection="c"))
    return folder


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def test_a_finished_output_cut_short_is_refused_and_kept(tmp_path):
    folder = _opened(tmp_path)
    out = folder.ranking(1, "queries")
    ranking = "q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0 t\nq2 Q0 d3 1 3.0 t\n"
    calls = []

    def work():
        calls.append(1)
        _write(out, ranking)

    folder.step("episode-1/search-queries", out, work)
    recorded = json.loads(folder.manifest_path.read_text())["steps"]["episode-1/search-queries"]["outputs"]
    assert list(recorded) == ["episode-1/rankings/queries.trec"]
    folder.step("episode-1/search-queries", out, work)  # unchanged: reused, not made again
    assert calls == [1]

    cut = ranking.rsplit("q2", 1)[0]  # the last query lost, cut at a line boundary
    out.write_text(cut)
    with pytest.raises(OutputMismatchError) as err:
        folder.step("episode-1/search-queries", out, work)
    message = str(err.value)
    assert "\n" not in message and str(out) in message and f"{len(ranking)} -> {len(cut)} bytes" in message
    assert out.read_text() == cut and calls == [1], "never rewritten nor removed"

    out.write_text(ranking.replace("2.0", "2.5"))  # same size, other content
    with pytest.raises(OutputMismatchError, match="other content, same size"):
        folder.step("episode-1/search-queries", out, work)


def test_outputs_of_runs_made_before_fingerprints_are_trusted(tmp_path):
    folder = _opened(tmp_path)
    out = folder.pool(1)
    _write(out, '{"query_id": "q1"}\n')  # as an older version left it: no record of the step's outputs
    calls = []
    assert folder.step("episode-1/mine", out, lambda: calls.append(1)) == out
    assert calls == [] and out.exists()


def test_folder_outputs_are_fingerprinted_file_by_file(tmp_path):
    folder = _opened(tmp_path)
    model = folder.model(1)
    folder.step("episode-1/train", model, lambda: (_write(model / "config.json", "{}"),
                                                     _write(model / "model.safetensors", "weights")))
    _write(model / "README.md", "a card written later")  # a file the step did not write is not its output
    folder.step("episode-1/train", model, lambda: pytest.fail("trained again"))
    (model / "model.safetensors").unlink()
    with pytest.raises(OutputMismatchError, match=r"model\.safetensors: missing since step episode-1/train"):
        folder.step("episode-1/train", model, lambda: pytest.fail("trained again"))


@pytest.mark.slow
def test_runner_refuses_a_pool_cut_short_on_resume(synthetic_dir, tiny_model_dir, tmp_path, monkeypatch):
    """An unfinished episode's pool.jsonl that lost its last line is refused by the resumed runner (exit 2 through
    cli.py: a ValueError), and left as it is."""

    args = _episode_args(synthetic_dir, tiny_model_dir, tmp_path / "run", token_cache_dir=str(tmp_path / "cache"))
    runner = EpisodeRunner(args)
    runner.folder.open(args, collections=runner.collections.files())
    runner.episode_zero()
    pool = runner.mine(1)
    steps = json.loads(runner.folder.manifest_path.read_text())["steps"]
    assert set(steps["episode-1/mine"]["outputs"]) == {"episode-1/pool.jsonl", "episode-1/pool.stats.json"}
    lines = pool.read_text().splitlines(keepends=True)
    assert len(lines) > 2
    pool.write_text("".join(lines[:-1]))

    monkeypatch.setattr(episodes, "train_episode", lambda *args: pytest.fail("trained on a cut pool"))
    with pytest.raises(OutputMismatchError) as err:
        EpisodeRunner(args).run()
    assert str(pool) in str(err.value) and "since step episode-1/mine wrote it" in str(err.value)
    assert is_input_error(err.value)
    assert pool.read_text() == "".join(lines[:-1])


def _resume(collection, model, out, monkeypatch):
    """run() up to the episodes, all marked finished: the manifest's checks alone."""

    monkeypatch.setattr(EpisodeRunner, "episode_zero", lambda self: None)
    RunFolder(out).done(1).parent.mkdir(parents=True, exist_ok=True)
    RunFolder(out).done(1).write_text("{}")
    return EpisodeRunner(_episode_args(collection, model, out, eval_split="")).run()


def _two_copies(collection, tmp_path):
    """The same collection at two paths, under the same folder name."""
    a, b = tmp_path / "a" / "collection", tmp_path / "b" / "collection"
    shutil.copytree(collection, a)
    shutil.copytree(collection, b)
    return a, b


def test_collections_are_compared_by_content_not_path(synthetic_dir, tiny_model_dir, tmp_path, monkeypatch):
    a, b = _two_copies(synthetic_dir, tmp_path)
    out = tmp_path / "run"
    _resume(a, tiny_model_dir, out, monkeypatch)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["collections"]) == {"collection", "corpus"}
    assert set(manifest["collections"]["collection"]) == {"queries.jsonl", "qrels/train.tsv"}

    _resume(b, tiny_model_dir, out, monkeypatch)  # the same data at another path: accepted
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["collection"] == str(b), "later readers use the data where it is now"

    qrels = b / "qrels" / "train.tsv"
    header, *rows = qrels.read_text().splitlines()
    qrels.write_text("\n".join([header, *rows[:-1]]) + "\n")  # a judgement deleted between a kill and the resume
    with pytest.raises(ConfigMismatchError, match=r"data collection: other content \(qrels/train\.tsv\)"):
        _resume(b, tiny_model_dir, out, monkeypatch)
    assert json.loads((out / "manifest.json").read_text())["collections"] == manifest["collections"]

    renamed = tmp_path / "c" / "other-name"
    shutil.copytree(a, renamed)  # the name still counts: it names the rankings, qrels and eval.json keys
    with pytest.raises(ConfigMismatchError, match="collection: 'collection' -> 'other-name'"):
        _resume(renamed, tiny_model_dir, out, monkeypatch)


def test_runs_made_before_collection_fingerprints_compare_paths(synthetic_dir, tiny_model_dir, tmp_path,
                                                                  monkeypatch):
    a, b = _two_copies(synthetic_dir, tmp_path)
    out = tmp_path / "run"
    _resume(a, tiny_model_dir, out, monkeypatch)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["collections"]  # as written before this version
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigMismatchError, match="collection: "):
        _resume(b, tiny_model_dir, out, monkeypatch)
    _resume(a, tiny_model_dir, out, monkeypatch)  # its own path: resumed, and the fingerprints are taken now
    assert "collections" in json.loads((out / "manifest.json").read_text())
