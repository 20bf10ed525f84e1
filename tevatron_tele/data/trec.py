"""TREC run and qrels files: `qid Q0 docid rank score tag` and `qid 0 docid grade`."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..utils import PathLike, atomic_path

# qid -> [(docid, score), ...] best first
Run = dict[str, list[tuple[str, float]]]


def write_run(path: PathLike, run: Mapping[str, Sequence[tuple[str, float]]], tag: str = "tevatron-tele") -> None:
    """Write a TREC run file atomically, each query's list in the given (best-first) order."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for qid, ranked in run.items():
                for rank, (docid, score) in enumerate(ranked, start=1):
                    f.write(f"{qid} Q0 {docid} {rank} {float(score):.6f} {tag}\n")


def read_run(path: PathLike) -> Run:
    """Read a TREC run file (6 columns; a 3-column `qid docid rank` MS MARCO file also works)."""
    run: dict[str, list[tuple[str, float, int]]] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 6:
                qid, _, docid, rank, score = parts[:5]
            elif len(parts) == 3:
                qid, docid, rank = parts
                score = str(-float(rank))
            else:
                raise ValueError(f"{path}:{line_no}: expected 6 columns (qid Q0 docid rank score tag), "
                                 f"got {len(parts)}")
            try:
                run.setdefault(qid, []).append((docid, float(score), int(rank)))
            except ValueError as e:
                raise ValueError(f"{path}:{line_no}: bad rank or score field: {e}") from None
    return {q: [(d, s) for d, s, _ in sorted(rows, key=lambda r: (r[2], -r[1]))] for q, rows in run.items()}


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
