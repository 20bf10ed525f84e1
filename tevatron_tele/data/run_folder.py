"""Every path of an episode run folder, in one place: nothing else joins run paths by hand.

RUN/manifest.json                  config, library versions, seeds, per-step timings (runner.workspace)
RUN/.run.lock, RUN/.run.lock.pid   held by the one process running in the folder, and that process's id
RUN/episode-<i>/model/             episode i's model (i >= 1; episode 0 is the base model)
RUN/episode-<i>/embeddings/<name>  corpus / query embeddings of episode i's model (a prefix: .npy shards + ids)
RUN/episode-<i>/rankings/<name>.trec  queries (train queries), positives (lookahead), test, dev, test-<name>
RUN/episode-<i>/pool.jsonl         the pool episode i trained on (+ pool.stats.json)
RUN/episode-<i>/scores.npz         S_i(q, d) of pools 1..i and the analysis probe (the forgetting analysis)
RUN/episode-<i>/eval.json          retrieval quality after episode i
RUN/episode-<i>/DONE               written last: the episode is complete and never touched again
RUN/bm25/index/, RUN/bm25/<name>.trec   the BM25 index and runs (train, test)
RUN/qrels/<label>.qrels            each evaluated split's qrels as TREC qrels
RUN/best.json, RUN/best -> episode-<k>  the verdict and the kept episode
RUN/report/                        the forgetting and convergence report (analysis.json, report.md, plots)
RUN/token_cache/                   the token caches (unless --token_cache_dir)

This is the data layer's view (paths, episode listing); the runner's `RunFolder` adds the manifest, the lock and the
step bookkeeping, and the evaluation's `RunWorkspace` the pools read for analysis.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..utils import PathLike

MANIFEST_FILE = "manifest.json"
LOCK_NAME = ".run.lock"
DONE_FILE = "DONE"
SCORES_FILE = "scores.npz"
EPISODE_PREFIX = "episode-"
_EPISODE_RE = re.compile(r"episode-(\d+)")


def episode_number(name: str) -> int | None:
    """The episode an `episode-<i>` folder name stands for.

    Args:
        name: a folder name (not a path).

    Returns:
        i, or None for any other name.
    """
    match = _EPISODE_RE.fullmatch(name)
    return int(match.group(1)) if match else None


class RunLayout:
    """The paths of one run folder (nothing is read or written here but the listing of episodes).

    Args:
        root: the run folder (kept as given: not resolved).
    """

    def __init__(self, root: PathLike):
        self.root = Path(root)
        self.manifest_path = self.root / MANIFEST_FILE
        self.lock_path = self.root / LOCK_NAME
        self.lock_pid_path = self.root / (LOCK_NAME + ".pid")
        self.best_json = self.root / "best.json"
        self.best_link = self.root / "best"
        self.report_dir = self.root / "report"
        self.bm25_dir = self.root / "bm25"
        self.bm25_index = self.bm25_dir / "index"
        self.qrels_dir = self.root / "qrels"
        self.token_cache_dir = self.root / "token_cache"

    def episode(self, i: int) -> Path:
        return self.root / f"{EPISODE_PREFIX}{i}"

    def model(self, i: int) -> Path:
        return self.episode(i) / "model"

    def embeddings(self, i: int, name: str | None = None) -> Path:
        """Episode i's embeddings folder, or the prefix of its embeddings `name` (corpus, train-queries, ...)."""
        folder = self.episode(i) / "embeddings"
        return folder if name is None else folder / name

    def ranking(self, i: int, name: str) -> Path:
        return self.episode(i) / "rankings" / f"{name}.trec"

    def pool(self, i: int) -> Path:
        return self.episode(i) / "pool.jsonl"

    def scores(self, i: int) -> Path:
        return self.episode(i) / SCORES_FILE

    def eval(self, i: int) -> Path:
        return self.episode(i) / "eval.json"

    def done(self, i: int) -> Path:
        """Episode i's DONE marker: the episode is finished when it exists (`done(i).exists()`)."""
        return self.episode(i) / DONE_FILE

    def bm25_run(self, name: str) -> Path:
        return self.bm25_dir / f"{name}.trec"

    def qrels(self, label: str) -> Path:
        return self.qrels_dir / f"{label}.qrels"

    def episodes(self) -> list[int]:
        """Every episode with a folder (`episode-<i>`).

        Returns:
            The episode numbers, ascending; none when the run folder does not exist.
        """
        if not self.root.is_dir():
            return []
        return sorted(i for p in self.root.iterdir() if p.is_dir() and (i := episode_number(p.name)) is not None)
