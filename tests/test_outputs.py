"""What a step may do at its output path: never remove or replace what it did not write (a folder, a foreign
file), reuse its own earlier output only while that still matches (the step contract), and refuse otherwise.

The cases here are rows of the "Reliability" table in BENCHMARKS.md.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tevatron_tele.utils import OutputExistsError, atomic_path

CORPUS = ('{"_id": "d1", "title": "Alpha", "text": "alpha text"}\n'
          '{"_id": "d2", "title": "", "text": "beta text"}\n'
          '{"_id": "d3", "text": "gamma text"}\n')
QUERIES = '{"_id": "q1", "text": "about alpha"}\n{"_id": "q2", "text": "about beta"}\n'
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t0\n"


def _beir(root: Path) -> Path:
    """A 3-document BEIR collection with a test split."""
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(CORPUS)
    (root / "queries.jsonl").write_text(QUERIES)
    (root / "qrels" / "test.tsv").write_text(QRELS)
    return root


def _driver(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TELE_DEBUG"}
    return subprocess.run([sys.executable, "-m", f"tevatron_tele.driver.{name}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _refused(proc: subprocess.CompletedProcess, pattern: str) -> str:
    """Exit status 2, no traceback, and a last stderr line `error: ...` matching `pattern`."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("error: ") and re.search(pattern, last), last
    return last


def _user_folder(path: Path) -> dict[str, bytes]:
    """A folder of the user's (a nested file included); returns its contents to compare with later."""
    (path / "model").mkdir(parents=True)
    (path / "notes.txt").write_bytes(b"mine\n")
    (path / "model" / "weights.bin").write_bytes(b"\x00\x01")
    return _contents(path)


def _contents(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- outputs over folders

def test_atomic_path_refuses_a_folder_at_a_file_output(tmp_path):
    before = _user_folder(tmp_path / "out")
    with pytest.raises(OutputExistsError, match="is an existing folder") as info:
        with atomic_path(tmp_path / "out") as tmp:
            tmp.write_text("x")
    assert info.value.filename == str(tmp_path / "out")
    assert _contents(tmp_path / "out") == before and not list(tmp_path.glob(".tmp-*"))


def test_atomic_path_replaces_only_its_own_folder(tmp_path):
    own = lambda p: (p / "MARK").exists()  # noqa: E731
    before = _user_folder(tmp_path / "out")
    with pytest.raises(OutputExistsError, match="did not write"):
        with atomic_path(tmp_path / "out", replaces=own) as tmp:
            tmp.mkdir()
            (tmp / "MARK").write_text("1")
    assert _contents(tmp_path / "out") == before
    (tmp_path / "empty").mkdir()  # an empty folder holds nothing to lose: a folder output may take its place
    for final in (tmp_path / "empty", tmp_path / "empty"):  # then its own output is replaced
        with atomic_path(final, replaces=own) as tmp:
            tmp.mkdir()
            (tmp / "MARK").write_text("2")
        assert (final / "MARK").read_text() == "2"
    (tmp_path / "file").write_text("user file")
    with pytest.raises(OutputExistsError, match="existing file where a folder"):
        with atomic_path(tmp_path / "file", replaces=own) as tmp:
            tmp.mkdir()
    assert (tmp_path / "file").read_text() == "user file"
    with atomic_path(tmp_path / "new.txt") as tmp:  # the ordinary case still works
        tmp.write_text("ok")
    assert (tmp_path / "new.txt").read_text() == "ok"


def test_drivers_never_replace_a_folder_at_their_output(tmp_path):
    _beir(tmp_path / "c")
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 2.0 t\nq2 Q0 d2 1 1.0 t\n")
    before = _user_folder(tmp_path / "RUN" / "episode-2")
    folder = "RUN/episode-2"
    cases = [
        ("evaluate", "--run", "run.trec", "--collection", "c", "--output", folder),
        ("evaluate", "--collection", "c", "--write_qrels", folder),
        ("export_corpus", "--collection", "c", "--output", folder),
        ("mine", "--collection", "c", "--split", "test", "--query_run", "run.trec", "--output", folder),
    ]
    for name, *args in cases:
        _refused(_driver(name, *args, cwd=tmp_path), r"^error: RUN/episode-2: is an existing folder")
        assert _contents(tmp_path / folder) == before, name
        assert not list((tmp_path / "RUN").glob(".tmp-*")) and sorted(os.listdir(tmp_path / "RUN")) == ["episode-2"]


# ---------------------------------------------------------------- the step contract: stale outputs, foreign files

def test_step_output_reuses_refuses_and_replaces(tmp_path):
    from tevatron_tele.data.outputs import OutputMismatchError, StepOutput, record_path

    src = tmp_path / "in.txt"
    src.write_text("input one\n")
    out = tmp_path / "out.txt"

    def step(depth=5, source=src):
        return StepOutput("demo", [out], settings={"depth": depth}, inputs={"source": source})

    def write(output, text):
        assert not output.reusable(overwrite=True)
        output.begin()
        assert read_state() == "writing"
        out.write_text(text)
        output.commit(counts={"lines": 1})

    def read_state():
        import json
        return json.loads(record_path(out).read_text())["state"]

    write(step(), "first\n")
    assert read_state() == "complete" and step().reusable()
    moved = tmp_path / "elsewhere" / "in.txt"  # the same data at another path is the same input
    moved.parent.mkdir()
    moved.write_bytes(src.read_bytes())
    assert step(source=moved).reusable()
    with pytest.raises(OutputMismatchError, match=r"out\.txt exists but was made otherwise: setting depth: 5 -> 3; "
                                                  r"pass --overwrite"):
        step(depth=3).reusable()
    src.write_text("input two\n")
    with pytest.raises(OutputMismatchError, match=r"input source: other content \(in\.txt\)"):
        step().reusable()
    assert out.read_text() == "first\n"
    assert not step().reusable(overwrite=True)  # --overwrite: the step's own output is written again
    write(step(), "second\n")
    out.write_text("secon\n")  # changed (or cut short) since the step wrote it
    with pytest.raises(OutputMismatchError, match=r"output out\.txt: changed since demo wrote it"):
        step().reusable()
    record_path(out).unlink()  # no record: not the step's own, not even with --overwrite
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match=r"exists, and demo has no record of writing it"):
            step().reusable(overwrite=overwrite)
    assert out.read_text() == "secon\n"


def test_an_unfinished_own_output_is_written_again(tmp_path):
    from tevatron_tele.data.outputs import StepOutput

    out = tmp_path / "out.txt"
    first = StepOutput("demo", [out], settings={}, inputs={})
    assert not first.reusable()
    first.begin()
    out.write_text("half")  # the process stops before commit
    assert not StepOutput("demo", [out], settings={}, inputs={}).reusable()


def _random_embeddings(folder: Path, seed: int) -> tuple[Path, Path]:
    import numpy as np

    from tevatron_tele.retrieval.embeddings import save_embeddings

    rng = np.random.default_rng(seed)
    save_embeddings(folder / "corpus", rng.normal(size=(20, 4)).astype(np.float32), [f"d{i}" for i in range(20)])
    save_embeddings(folder / "queries", rng.normal(size=(3, 4)).astype(np.float32), ["q1", "q2", "q3"])
    return folder / "queries", folder / "corpus"


def test_search_driver_never_reuses_a_stale_ranking(tmp_path):
    from tevatron_tele.data.outputs import OutputMismatchError
    from tevatron_tele.driver.search import SearchArguments, run

    queries, corpus = _random_embeddings(tmp_path, 0)
    out = tmp_path / "queries.trec"

    def search(depth, **kw):
        return run(SearchArguments(output=str(out), query_embeddings=str(queries), corpus_embeddings=str(corpus),
                                   depth=depth, **kw))

    search(5)
    first = out.read_text()
    assert len(first.splitlines()) == 15
    search(5, backend="torch")  # the same ranking asked for: reused, not rewritten
    assert out.read_text() == first
    with pytest.raises(OutputMismatchError, match=r"setting depth: 5 -> 3"):
        search(3)
    assert out.read_text() == first
    search(3, overwrite=True)
    assert len(out.read_text().splitlines()) == 9
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:6]))  # a ranking missing its last query
    with pytest.raises(OutputMismatchError, match=r"output queries\.trec: changed since search wrote it"):
        search(3)
    _random_embeddings(tmp_path, 1)  # other vectors at the same prefixes
    with pytest.raises(OutputMismatchError, match=r"input corpus: other content \(corpus\.npy\)"):
        search(3, overwrite=False)


def test_encode_driver_refuses_vectors_of_another_model(tmp_path, synthetic_dir, tiny_model_dir):
    import shutil

    import numpy as np

    from tevatron_tele.data.outputs import OutputMismatchError
    from tevatron_tele.data.synthetic import build_tiny_model
    from tevatron_tele.driver.encode import EncodeArguments, run
    from tevatron_tele.retrieval.embeddings import load_embeddings

    other = build_tiny_model(tmp_path / "other", vocab_source=synthetic_dir, seed=1)
    first = tmp_path / "first"
    shutil.copytree(tiny_model_dir, first)
    out = tmp_path / "emb" / "queries"

    def encode(model, **kw):
        return run(EncodeArguments(model_dir=str(model), collection=str(synthetic_dir), output=str(out),
                                   encode="queries", device="cpu", dtype="float32", **kw))

    encode(first)
    vectors = np.array(load_embeddings(out)[0])
    encode(first)  # same model, same data: reused
    with pytest.raises(OutputMismatchError, match=r"input model: other content \(model\.safetensors"):
        encode(other)
    np.testing.assert_array_equal(load_embeddings(out)[0], vectors)
    encode(other, overwrite=True)
    assert not np.allclose(load_embeddings(out)[0], vectors)


def test_drivers_refuse_a_foreign_file_and_reuse_the_same_data_elsewhere(tmp_path):
    import shutil

    _beir(tmp_path / "c")
    (tmp_path / "corpus.jsonl").write_text("the user's own file\n")
    _refused(_driver("export_corpus", "--collection", "c", "--output", "corpus.jsonl", "--overwrite", cwd=tmp_path),
             r"^error: corpus\.jsonl: exists, and export_corpus has no record of writing it")
    assert (tmp_path / "corpus.jsonl").read_text() == "the user's own file\n"
    ok = _driver("export_corpus", "--collection", "c", "--output", "out/corpus.jsonl", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    written = (tmp_path / "out" / "corpus.jsonl").stat().st_mtime_ns
    shutil.copytree(tmp_path / "c", tmp_path / "copy")
    again = _driver("export_corpus", "--collection", "copy", "--output", "out/corpus.jsonl", cwd=tmp_path)
    assert again.returncode == 0 and "reusing it" in again.stderr, again.stderr
    assert (tmp_path / "out" / "corpus.jsonl").stat().st_mtime_ns == written
    (tmp_path / "copy" / "corpus.jsonl").write_text(CORPUS.replace("gamma", "delta"))
    _refused(_driver("export_corpus", "--collection", "copy", "--output", "out/corpus.jsonl", cwd=tmp_path),
             r"^error: out/corpus\.jsonl exists but was made otherwise: input corpus: other content \(corpus\.jsonl\)")


def test_mine_and_evaluate_refuse_other_settings(tmp_path):
    _beir(tmp_path / "c")
    (tmp_path / "run.trec").write_text("q1 Q0 d2 1 2.0 t\nq1 Q0 d3 2 1.0 t\nq2 Q0 d1 1 1.0 t\n")
    mine = ["--collection", "c", "--split", "test", "--query_run", "run.trec", "--output", "pool.jsonl"]
    assert _driver("mine", *mine, cwd=tmp_path).returncode == 0
    _refused(_driver("mine", *mine, "--sample", "1", cwd=tmp_path),
             r"^error: pool\.jsonl exists but was made otherwise: setting sample: 30 -> 1; pass --overwrite")
    _refused(_driver("mine", *mine, "--train_positives", "best", cwd=tmp_path),
             r"^error: pool\.jsonl exists but was made otherwise: setting train_positives: 'all' -> 'best'; ")
    evaluate = ["--run", "run.trec", "--collection", "c", "--output", "eval.json"]
    assert _driver("evaluate", *evaluate, cwd=tmp_path).returncode == 0
    _refused(_driver("evaluate", *evaluate, "--measures", "nDCG@10", cwd=tmp_path),
             r"^error: eval\.json exists but was made otherwise: setting measures: ")
    (tmp_path / "c" / "qrels" / "test.tsv").write_text(QRELS.replace("q1\td1\t1", "q1\td2\t1"))
    _refused(_driver("evaluate", *evaluate, cwd=tmp_path), r"input collection: other content \(qrels/test\.tsv\)")


# ---------------------------------------------------------------- concurrent runs

def test_a_second_process_in_a_run_folder_is_refused(tmp_path, synthetic_dir, tiny_model_dir):
    from tevatron_tele.runner.workspace import RunFolder

    folder = RunFolder(tmp_path / "run")
    folder.lock()
    folder.lock()  # this process may open its own folder again
    try:
        proc = _driver("episodes", "--output_dir", "run", "--model_name_or_path", str(tiny_model_dir),
                       "--collection", str(synthetic_dir), "--device", "cpu", cwd=tmp_path)
        _refused(proc, rf"^error: run is in use by another run \(pid {os.getpid()}\); wait for it to finish")
        assert not folder.manifest_path.exists()
    finally:
        folder.unlock()
    code = f"from tevatron_tele.runner.workspace import RunFolder; RunFolder({str(folder.root)!r}).lock()"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0  # free again


# ---------------------------------------------------------------- ids and formats

@pytest.mark.parametrize("which,data,pattern", [
    ("corpus.jsonl", CORPUS.replace('"d2"', '"d 2"'),
     r"corpus\.jsonl:2: field '_id': id 'd 2' holds whitespace, which TREC run and qrels files cannot carry"),
    ("corpus.jsonl", CORPUS.replace('"d2"', '"d2\\t"'), r"corpus\.jsonl:2: field '_id': id 'd2\\t' holds whitespace"),
    ("queries.jsonl", QUERIES.replace('"q2"', '"q 2"'), r"queries\.jsonl:2: field '_id': id 'q 2' holds whitespace"),
    # split on whitespace, this row read as the judgement of document "1" of query q1
    ("qrels/test.tsv", QRELS + "q1\td 1\t1\n", r"test\.tsv:5: field 'corpus-id': id 'd 1' holds whitespace"),
])
def test_ids_with_whitespace_are_refused_at_load(tmp_path, which, data, pattern):
    from tevatron_tele.data.collections import CollectionError, load_collection

    root = _beir(tmp_path / "c")
    (root / which).write_text(data)
    with pytest.raises(CollectionError, match=pattern):
        load_collection(root, "test")


def test_beir_qrels_are_split_on_tabs(tmp_path):
    from tevatron_tele.data.collections import read_qrels

    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\r\nq2\td2 \t2\n")
    assert read_qrels(path) == {"q1": {"d1": 1}, "q2": {"d2": 2}}


def test_mine_driver_refuses_unknown_documents_and_bad_counts(tmp_path):
    _beir(tmp_path / "c")
    (tmp_path / "run.trec").write_text("q1 Q0 d2 1 2.0 t\nq1 Q0 d9 2 1.0 t\n")
    mine = ["--collection", "c", "--split", "test", "--query_run", "run.trec", "--output", "out/pool.jsonl"]
    _refused(_driver("mine", *mine, cwd=tmp_path), r"^error: run\.trec:2: field 'docid': document 'd9' is not in "
                                                   r"the corpus$")
    (tmp_path / "run.trec").write_text("q1 Q0 d2 1 2.0 t\nq1 Q0 d3 2 1.0 t\n")
    for flags, pattern in ((["--depth", "0"], r"--depth must be a positive number of ranks, got 0"),
                           (["--depth", "-1"], r"--depth must be a positive number of ranks, got -1"),
                           (["--sample", "-3"], r"--sample must be 0 \(every candidate\) or a positive count, got -3")):
        _refused(_driver("mine", *mine, *flags, cwd=tmp_path), pattern)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- operating-system errors

def _cli(monkeypatch, capsys, main, argv: list[str]) -> tuple[int, str]:
    """Run a driver's main through the one error path, in this process; (exit status, stderr)."""
    from tevatron_tele.cli import run_cli

    monkeypatch.setattr(sys, "argv", ["driver", *argv])
    monkeypatch.delenv("TELE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        run_cli(main)
    return info.value.code, capsys.readouterr().err


def test_file_system_errors_name_the_users_path(tmp_path, monkeypatch, capsys):
    import errno

    from tevatron_tele.driver.evaluate import main

    _beir(tmp_path / "c")
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 2.0 t\n")
    monkeypatch.chdir(tmp_path)
    argv = ["--run", "run.trec", "--collection", "c", "--output", "out/eval.json"]
    (tmp_path / "out").mkdir()
    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):  # what a read-only file system answers to the step's temporary folder
        if ".tmp-" in str(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(os, "mkdir", read_only)
        code, err = _cli(m, capsys, main, argv)
    # the first write is the output's record beside it; never the step's temporary name
    assert code == 2 and re.fullmatch(r"error: out/eval\.json(\.step\.json)?: Read-only file system",
                                      err.strip().splitlines()[-1]), err
    assert "Traceback" not in err

    def disk_full(*args, **kwargs):  # a write that fails names no file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    from tevatron_tele.data import corpus_store

    with monkeypatch.context() as m:
        m.setattr(corpus_store, "_SETTLE_NS", 0)  # the corpus store of the first run is reused: only the output writes
        m.setattr(Path, "write_text", disk_full)
        code, err = _cli(m, capsys, main, argv)
        assert code == 2 and re.fullmatch(r"error: out/eval\.json(\.step\.json)?: No space left on device",
                                          err.strip().splitlines()[-1]), err
        m.setenv("TELE_DEBUG", "1")  # --debug / TELE_DEBUG keeps the traceback
        m.setattr(sys, "argv", ["driver", *argv])
        from tevatron_tele.cli import run_cli

        with pytest.raises(OSError, match="No space left"):
            run_cli(main)
    assert not list((tmp_path / "out").iterdir())


def test_a_missing_tokenizer_is_one_line(tmp_path):
    _beir(tmp_path / "c")
    proc = _driver("export_corpus", "--collection", "c", "--tokenizer", "MISSING", "--output", "corpus.jsonl",
                   cwd=tmp_path)
    _refused(proc, r"^error: MISSING: cannot load a tokenizer: no such folder")
    assert not (tmp_path / "corpus.jsonl").exists()


# ---------------------------------------------------------------- counted drops in the run folder

def test_dropped_qrels_are_counted_in_the_manifest(tmp_path, monkeypatch, tiny_model_dir):
    import json

    from tevatron_tele.runner.config import EpisodeArguments
    from tevatron_tele.runner.episodes import EpisodeRunner

    root = _beir(tmp_path / "c")
    (root / "qrels" / "train.tsv").write_text(QRELS + "q1\td9\t1\nq7\td1\t1\n")  # an unknown document and query
    args = EpisodeArguments(output_dir=str(tmp_path / "run"), model_name_or_path=str(tiny_model_dir),
                            collection=str(root), device="cpu")
    runner = EpisodeRunner(args)

    class Stop(Exception):
        pass

    def stop():
        raise Stop

    monkeypatch.setattr(runner, "episode_zero", stop)  # only the opening of the run folder is looked at
    with pytest.raises(Stop):
        runner.run()
    data = json.loads((tmp_path / "run" / "manifest.json").read_text())["data"]
    assert (data["train"]["unknown_doc_ids"], data["train"]["unknown_query_ids"]) == (1, 1)
    assert (data["eval:main"]["unknown_doc_ids"], data["eval:main"]["unknown_query_ids"]) == (0, 0)
    assert data["train"]["judgements"] == 3


# ---------------------------------------------------------------- every check before the run folder is written

def test_a_refused_setting_leaves_no_manifest(tmp_path, monkeypatch, synthetic_dir, tiny_model_dir):
    import dataclasses

    from tevatron_tele.runner.config import EpisodeArguments
    from tevatron_tele.runner.episodes import EpisodeRunner

    good = EpisodeArguments(output_dir=str(tmp_path / "run"), model_name_or_path=str(tiny_model_dir),
                            collection=str(synthetic_dir), device="cpu", eval_split="")
    bad = [({"pooling": "foo"}, r"pooling"), ({"depth": -5}, r"--depth must be a positive number of ranks, got -5"),
           ({"sample": -3}, r"--sample must be 0"), ({"negative_mixing": "foo"}, r"--negative_mixing must be"),
           ({"source_weights": "ann=lots"}, r"--source_weights: weight of 'ann' is not a number: 'lots'"),
           ({"train_n_passages": 0}, r"--train_n_passages must be >= 1, got 0"),
           ({"model_name_or_path": str(tmp_path / "no-such-model")}, r"no-such-model"),
           ]
    for change, pattern in bad:
        with pytest.raises((ValueError, FileNotFoundError), match=pattern):
            EpisodeRunner(dataclasses.replace(good, **change)).run()
        assert not (tmp_path / "run" / "manifest.json").exists(), change

    class Stop(Exception):
        pass

    runner = EpisodeRunner(good)  # the corrected command, in the same folder

    def stop():
        raise Stop

    monkeypatch.setattr(runner, "episode_zero", stop)
    with pytest.raises(Stop):
        runner.run()
    assert (tmp_path / "run" / "manifest.json").exists()
