"""TREC run and qrels files: `qid Q0 docid rank score tag` and `qid 0 docid grade`."""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..utils import InputFileError, PathLike, atomic_path, iter_lines, location
from .line_index import IndexedLines, LineIndex, decode_line

# qid -> [(docid, score), ...] best first
Run = dict[str, list[tuple[str, float]]]


class RunFileError(InputFileError):
    """Bad TREC run file; the message names file, line and column (qid, Q0, docid, rank, score, tag)."""


def _run_error(path: PathLike, line: int | str | None, field_name: str, problem: str) -> RunFileError:
    return RunFileError(location(path, line, field_name, problem))


def write_run(path: PathLike, run: Mapping[str, Sequence[tuple[str, float]]], tag: str = "tevatron-tele") -> None:
    """Write a TREC run file atomically, each query's list in the given (best-first) order.

    Args:
        path: the run file.
        run: {query id: [(docid, score), ...]}, best first.
        tag: the run's name (the last column).
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for qid, ranked in run.items():
                for rank, (docid, score) in enumerate(ranked, start=1):
                    f.write(f"{qid} Q0 {docid} {rank} {float(score):.6f} {tag}\n")


def _parse_run_line(path: PathLike, line_no: int, line: str) -> tuple[str, str, float, int] | None:
    """(qid, docid, score, rank) of a run line; None for a blank one. A 3-column line scores -rank."""
    parts = line.split()
    if not parts:
        return None
    if len(parts) == 6:
        qid, _, docid, rank, score = parts[:5]
    elif len(parts) == 3:
        qid, docid, rank = parts
        score = None
    else:
        raise _run_error(path, line_no, "<columns>", f"expected 6 columns (qid Q0 docid rank score tag), "
                                                     f"got {len(parts)}")
    try:
        rank_value = int(rank)
    except ValueError:
        raise _run_error(path, line_no, "rank", f"not an integer: {rank!r}") from None
    if score is None:
        return qid, docid, -float(rank_value), rank_value
    try:
        score_value = float(score)
    except ValueError:
        raise _run_error(path, line_no, "score", f"not a number: {score!r}") from None
    if not math.isfinite(score_value):
        raise _run_error(path, line_no, "score", f"not a finite number: {score!r}")
    return qid, docid, score_value, rank_value


def _in_rank_order(rows: list[tuple[str, float, int]]) -> list[tuple[str, float]]:
    return [(d, s) for d, s, _ in sorted(rows, key=lambda r: (r[2], -r[1]))]


def read_run(path: PathLike) -> Run:
    """Read a TREC run file (6 columns; a 3-column `qid docid rank` MS MARCO file also works).

    Refused, naming file, line and column (RunFileError): a wrong column count, a non-integer rank, a non-finite
    score (NaN, inf), a document listed twice for one query, an empty file, invalid UTF-8. A BOM and CRLF are
    accepted. Ids are not checked against any collection: documents a collection lacks are simply not relevant.

    Args:
        path: the run file.

    Returns:
        {query id: [(document id, score), ...]} in rank order.
    """
    run: dict[str, list[tuple[str, float, int]]] = {}
    for line_no, line in iter_lines(path, _run_error):
        row = _parse_run_line(path, line_no, line)
        if row is not None:
            run.setdefault(row[0], []).append(row[1:])
    if not run:
        raise _run_error(path, None, "<file>", "empty: no ranked documents in the file")
    for qid, rows in run.items():
        if len({d for d, _, _ in rows}) != len(rows):
            _refuse_duplicate(path, qid)
    return {q: _in_rank_order(rows) for q, rows in run.items()}


class IndexedRun(IndexedLines[list[tuple[str, float]]]):
    """A TREC run file as a read-only mapping that reads one query's lines when it is looked up.

    What `read_run` returns, without holding the file: opening scans the bytes once for each query's lines
    (`LineIndex`); `run[qid]` parses and checks them as `read_run` does (same errors and rank order). Lines of
    queries never looked up are not checked beyond their query id. At a few integers per query, mining millions of
    ranked passages streams instead of loading them all.

    Args:
        path: the run file.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)

        def key_of(raw: bytes, line_no: int) -> str | None:  # the query id: the first column
            parts = raw.split(None, 1)
            if not parts:
                return None
            try:
                return parts[0].decode("utf-8")
            except UnicodeDecodeError:
                raise _run_error(path, line_no, "<utf-8>", "invalid UTF-8 in the query id") from None

        self._index = LineIndex(self.path, key_of, error=_run_error)
        if not len(self._index):
            raise _run_error(path, None, "<file>", "empty: no ranked documents in the file")

    def __getitem__(self, qid: str) -> list[tuple[str, float]]:
        if qid not in self._index:
            raise KeyError(qid)
        rows: list[tuple[str, float, int]] = []
        first: dict[str, int] = {}
        for line_no, raw in self._index.read(qid):
            row = _parse_run_line(self.path, line_no, decode_line(self.path, line_no, raw, _run_error))
            if row is None:
                continue
            if row[1] in first:
                raise _run_error(self.path, line_no, "docid", f"document {row[1]!r} listed twice for query "
                                                              f"{qid!r} (first at line {first[row[1]]})")
            first[row[1]] = line_no
            rows.append(row[1:])
        return _in_rank_order(rows)


def check_run_documents(path: PathLike, known: Callable[[str], bool], *, keyed_by_document: bool = False) -> None:
    """Refuse a run naming a document `known` does not know (RunFileError `FILE:LINE: field 'docid': ...`), which a
    step taking documents from a ranking (mining) would hand on to one that cannot use them.

    Args:
        path: the run file (already readable by `read_run`).
        known: whether a document id is in the corpus (e.g. `corpus.__contains__`).
        keyed_by_document: the run's qid column holds document ids too (a lookahead run keyed by positive).
    """
    for line_no, line in iter_lines(path, _run_error):
        row = _parse_run_line(path, line_no, line)
        if row is None:
            continue
        for name, docid in (("qid", row[0]), ("docid", row[1]))[0 if keyed_by_document else 1:]:
            if not known(docid):
                raise _run_error(path, line_no, name, f"document {docid!r} is not in the corpus")


def open_run(run: PathLike | Mapping[str, Sequence[tuple[str, float]]]) -> Mapping[str, Sequence[tuple[str, float]]]:
    """A run to look queries up in: an `IndexedRun` of a file (streamed), a mapping in memory as it is.

    Args:
        run: a TREC run file, or a Run already in memory.

    Returns:
        {query id: [(document id, score), ...] in rank order}, as a mapping.
    """
    return IndexedRun(run) if isinstance(run, (str, os.PathLike)) else run


def _refuse_duplicate(path: PathLike, qid: str) -> None:
    """Raise for the first document listed twice for `qid`, re-reading the file so a valid read keeps no lines."""
    first: dict[str, int] = {}
    for line_no, line in iter_lines(path, _run_error):
        parts = line.split()
        if parts and parts[0] == qid:
            docid = parts[2] if len(parts) == 6 else parts[1]
            if docid in first:
                raise _run_error(path, line_no, "docid", f"document {docid!r} listed twice for query {qid!r} "
                                                         f"(first at line {first[docid]})")
            first[docid] = line_no


def write_qrels(path: PathLike, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """Write qrels in the 4-column TREC format that trec_eval reads.

    Args:
        path: the qrels file.
        qrels: {query id: {docid: grade}}.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for qid, docs in qrels.items():
                for docid, grade in docs.items():
                    f.write(f"{qid} 0 {docid} {int(grade)}\n")
