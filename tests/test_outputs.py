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
