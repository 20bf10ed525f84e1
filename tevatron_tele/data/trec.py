"""TREC run and qrels files: `qid Q0 docid rank score tag` and `qid 0 docid grade`."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..utils import InputFileError, PathLike, atomic_path, iter_lines, location

# qid -> [(docid, score), ...] best first
Run = dict[str, list[tuple[str, float]]]


class RunFileError(InputFileError):
    """Bad TREC run file; the message names file, line and column (qid, Q0, docid, rank, score, tag)."""


def _run_error(path: PathLike, line: int | str | None, field_name: str, problem: str) -> RunFileError:
    return RunFileError(location(path, line, field_name, problem))


def write_run(path: PathLike, run: Mapping[str, Sequence[tuple[str, float]]], tag: str = "tevatron-tele") -> None:
    """Write a TREC run file atomically, each query's list in the given (best-first) order."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for qid, ranked in run.items():
                for rank, (docid, score) in enumerate(ranked, start=1):
                    f.write(f"{qid} Q0 {docid} {rank} {float(score):.6f} {tag}\n")


def read_run(path: PathLike) -> Run:
    """Read a TREC run file (6 columns; a 3-column `qid docid rank` MS MARCO file also works).

    Refused, with file, line and column named (RunFileError): a wrong number of columns, a rank that is
    not an integer, a score that is not a finite number (NaN, inf), a document listed twice for one
    query, an empty file, invalid UTF-8. A BOM and CRLF line endings are accepted. Ids are not checked
    against any collection: documents a collection lacks are simply not relevant.

    Args:
        path: the run file.

    Returns:
        {query id: [(document id, score), ...]} in rank order.
    """
    run: dict[str, list[tuple[str, float, int]]] = {}
    for line_no, line in iter_lines(path, _run_error):
        parts = line.split()
        if not parts:
            continue
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
            score_value = -float(rank_value)
        else:
            try:
                score_value = float(score)
            except ValueError:
                raise _run_error(path, line_no, "score", f"not a number: {score!r}") from None
            if not math.isfinite(score_value):
                raise _run_error(path, line_no, "score", f"not a finite number: {score!r}")
        run.setdefault(qid, []).append((docid, score_value, rank_value))
    if not run:
        raise _run_error(path, None, "<file>", "empty: no ranked documents in the file")
    for qid, rows in run.items():
        if len({d for d, _, _ in rows}) != len(rows):
            _refuse_duplicate(path, qid)
    return {q: [(d, s) for d, s, _ in sorted(rows, key=lambda r: (r[2], -r[1]))] for q, rows in run.items()}


def _refuse_duplicate(path: PathLike, qid: str) -> None:
    """Raise for the first document listed twice for `qid` (found by reading the file again, so that reading
    a valid run keeps no line numbers)."""
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
    """Write qrels in the 4-column TREC format that trec_eval reads."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for qid, docs in qrels.items():
                for docid, grade in docs.items():
                    f.write(f"{qid} 0 {docid} {int(grade)}\n")


def run_from_lists(qids: Iterable[str], docids: Iterable[Sequence[str]], scores: Iterable[Sequence[float]]) -> Run:
    return {q: list(zip(ds, map(float, ss))) for q, ds, ss in zip(qids, docids, scores)}


def ensure_parent(path: PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p
