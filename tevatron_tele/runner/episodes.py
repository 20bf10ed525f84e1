"""ANCE-Tele's training loop: mine with model i-1, train episode i from the base model, evaluate, repeat.

Each step is a method of `EpisodeRunner` that can be called alone (`mine`, `train`, `encode`, `evaluate`, `finish`,
`select`, `analyze`); the collections are set up by `runner.collection_setup`, training launched by `runner.launch`,
episode 0 shared by `runner.base_cache`. Every step writes its output atomically and is skipped when that output exists,
so a killed run resumes at the first unfinished step; an episode with a DONE marker is never written again.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ..backends import load_encoder
from ..data.collections import Collection
from ..data.pools import pool_stats_path
from ..data.trec import read_run
from ..evaluation.analysis import store_episode_scores
from ..evaluation.metrics import evaluate_collection, relevant_qrels, write_trec_qrels
from ..evaluation.report import analyze_and_report
from ..mining.tele import MiningConfig, mine_episode, mining_positives
from ..retrieval.bm25 import PyseriniUnavailableError, bm25_run_to_file, ensure_pyserini
from ..retrieval.embeddings import ids_path, is_complete, load_rows, npy_path, save_embeddings
from ..retrieval.encode import encode_to_file, resolve_device
from ..retrieval.scoring import EmbeddingScorer
from ..retrieval.search import search_to_file
from ..utils import setup_logging, write_json
from .base_cache import base_cache_dir, restore_episode_zero, share_episode_zero
from .collection_setup import OWN_SPLITS, TokenCaches, load_run_collections
from .config import EpisodeArguments
from .launch import check_settings, input_options, train_episode
from .selection import judge_run
from .workspace import RunFolder

logger = logging.getLogger(__name__)


class EpisodeRunner:
    """Runs (or resumes) the episodes of one run folder. `run()` returns the run folder.

    Args:
        args: the run's settings.
    """

    def __init__(self, args: EpisodeArguments):
        self.args = args
        self.folder = RunFolder(args.output_dir)
        self.device = resolve_device(args.device)
        self.collections = load_run_collections(args)
        self.caches = TokenCaches(args, Path(args.token_cache_dir or self.folder.token_cache_dir),
                                  self.collections.sources)

    def embed(self, i: int, collection: Collection, kind: str, name: str, model_state: dict) -> Path:
        """Encode a collection's corpus or queries with episode i's model (RUN/episode-i/embeddings/<name>).

        Args:
            i: the episode.
            collection: a collection of the run.
            kind: 'corpus' or 'queries'.
            name: the embeddings' name.
            model_state: holds episode i's model once loaded, so that it is loaded once per episode.

        Returns:
            The embeddings' prefix.
        """
        a, prefix = self.args, self.folder.embeddings(i, name)

        def work():
            if "model" not in model_state:  # episode 0's is the base model
                model = Path(a.model_name_or_path) if i == 0 else self.folder.model(i)
                model_state["model"], model_state["tokenizer"] = load_encoder(
                    model, self.device, pooling=a.pooling, normalize=a.normalize, backend=a.backend,
                    input_options=input_options(a))
            is_query = kind == "queries"
            return encode_to_file(self.caches.get(collection, kind), prefix, is_query=is_query,
                                  max_len=a.q_max_len if is_query else a.p_max_len, batch_size=a.encode_batch_size,
                                  dtype=a.embedding_dtype, amp=a.encode_amp,
                                  model=model_state["model"], tokenizer=model_state["tokenizer"], progress=a.progress)

        self.folder.step(f"episode-{i}/encode-{name}", prefix, work, done=lambda: is_complete(prefix),
                         files=lambda: [npy_path(prefix), ids_path(prefix)])
        return prefix

    def mine(self, i: int) -> Path:
        """Mine pool i from episode i-1's rankings (and pool i-1 for momentum, BM25's run for bm25 negatives).

        Args:
            i: the episode (>= 1).

        Returns:
            RUN/episode-i/pool.jsonl; complete when it and its stats are there (a pool without stats is mined again).
        """
        a, folder, out, prev = self.args, self.folder, self.folder.pool(i), i - 1
        sources, train = a.sources(), self.collections.train

        def work():
            mine_episode(
                train, out,
                query_run=folder.ranking(prev, "queries") if "ann" in sources else None,
                positive_run=folder.ranking(prev, "positives") if "lookahead" in sources else None,
                previous_pool=folder.pool(prev) if "momentum" in sources and prev >= 1 else None,
                bm25_run=_bm25(folder, a, train, "train") if "bm25" in sources else None,
                config=MiningConfig(depth=a.depth, sample=a.sample or None, seed=a.seed + i,
                                    all_positives=a.lookahead_all_positives, max_negative_ratio=a.max_negative_ratio,
                                    negative_margin=a.negative_margin, skip_top=a.skip_top,
                                    filter_positive=a.filter_positive, momentum=a.momentum,
                                    train_positives=a.train_positives),
                scores=self.mining_scores(prev))
            if _filter_needs_scores(a) and folder.done(prev).exists():
                _drop_corpus_embeddings(folder, a, prev)  # encoded again just now for the filter's scores

        folder.step(f"episode-{i}/mine", out, work, done=lambda: out.exists() and pool_stats_path(out).exists(),
                    files=lambda: [out, pool_stats_path(out)])
        return out

    def mining_scores(self, prev: int) -> EmbeddingScorer | Path | None:
        """The mining model's S(q, d) for pool prev+1, or None when no option needs them.

        The positive-aware filter scores every candidate (any source) from episode prev's embeddings of the training
        queries and the corpus. These are there, since pool prev+1 is mined before `finish(prev)` removes them, unless
        episode 0 was copied from --base_cache_dir (which holds no embeddings): they are then encoded again, and removed
        after mining unless --keep_embeddings. Momentum replay alone reads RUN/episode-<prev>/scores.npz (S_prev of
        pools 1..prev and the positives, which covers the momentum candidates: pool prev's negatives).

        Args:
            prev: the mining model's episode.

        Returns:
            A scorer of the embeddings, the stored scores' path, or None.
        """
        if _filter_needs_scores(self.args):
            queries = self.folder.embeddings(prev, "train-queries")
            corpus = self.folder.embeddings(prev, "corpus")
            if not (is_complete(queries) and is_complete(corpus)):
                model_state: dict = {}
                corpus = self.embed(prev, self.collections.train, "corpus", "corpus", model_state)
                queries = self.embed(prev, self.collections.train, "queries", "train-queries", model_state)
            return EmbeddingScorer(queries, corpus)
        if self.args.momentum != "all" and prev >= 1:
            return self.folder.scores(prev)
        return None

    def train(self, i: int) -> Path:
        """Train episode i's model on pool i (`launch.train_episode`).

        Args:
            i: the episode (>= 1).

        Returns:
            RUN/episode-i/model.
        """
        out = self.folder.model(i)
        self.folder.step(f"episode-{i}/train", out, lambda: train_episode(self.args, self.folder, i,
                                                                          self.caches.cache_dir, self.device))
        return out

    def encode(self, i: int, model_state: dict | None = None) -> Path:
        """Episode i's model's rankings of the training queries (and of their positives, for lookahead, unless i is the
        last episode), and for i >= 1 its stored scores (`_store_scores`).

        Args:
            i: the episode.
            model_state: holds episode i's model once loaded (shared with `evaluate`).

        Returns:
            The prefix of episode i's corpus embeddings.
        """
        a, folder, train = self.args, self.folder, self.collections.train
        model_state = {} if model_state is None else model_state
        corpus = self.embed(i, train, "corpus", "corpus", model_state)
        queries = self.embed(i, train, "queries", "train-queries", model_state)
        _search(folder, i, queries, corpus, "queries", a.depth, a, self.device)
        positives = functools.cache(lambda: _mining_positives(folder, a, train, i))  # read the runs once
        if i >= 1:
            _store_scores(folder, i, queries, corpus, positives, a.analysis_probe_k)
        if "lookahead" in a.sources() and i < a.num_episodes:
            lookahead = _positive_embeddings(folder, i, corpus, positives)
            _search(folder, i, lookahead, corpus, "positives", a.depth, a, self.device)
        return corpus

    def evaluate(self, i: int, corpus: Path | None = None, model_state: dict | None = None) -> Path | None:
        """Rank and measure every evaluated split with episode i's model (RUN/episode-i/eval.json).

        Each split's qrels are also written once as TREC qrels, RUN/qrels/<label>.qrels, for Pyserini's trec_eval: e.g.
        `python -m pyserini.eval.trec_eval -c -m ndcg_cut.10 RUN/qrels/scifact-test.qrels
        RUN/episode-1/rankings/test.trec` gives eval.json's nDCG@10.

        Args:
            i: the episode.
            corpus: the prefix of episode i's corpus embeddings (encoded when not given).
            model_state: holds episode i's model once loaded (shared with `encode`).

        Returns:
            eval.json, or None without an evaluated split.
        """
        a, evals = self.args, self.collections.evals
        if not evals:
            return None
        model_state = {} if model_state is None else model_state
        for name, label in self.collections.qrels_labels(a).items():
            path, qrels = self.folder.qrels(label), evals[name].qrels
            if not path.exists() and relevant_qrels(qrels or {}):
                write_trec_qrels(path, qrels)
        out = self.folder.eval(i)
        if out.exists():
            return out
        results = {}
        for name, collection in evals.items():
            own = name in OWN_SPLITS  # the training collection's splits share its corpus
            if own and corpus is None:
                corpus = self.embed(i, self.collections.train, "corpus", "corpus", model_state)
            prefix = corpus if own else self.embed(i, collection, "corpus", f"corpus-{name}", model_state)
            queries = self.embed(i, collection, "queries", f"queries-{name}", model_state)
            ranking = {"main": "test", "dev": "dev"}.get(name, f"test-{name}")
            run_path = _search(self.folder, i, queries, prefix, ranking, a.eval_depth, a, self.device)
            results[collection.name if own else name] = evaluate_collection(read_run(run_path), collection)
        write_json(out, results)
        main = next(iter(results.values()))
        logger.info("episode %d: %s", i, {k: round(v, 4) for k, v in main.items() if isinstance(v, float)})
        return out

    def finish(self, i: int) -> None:
        """Encode and evaluate with episode i's model (loaded once), then mark the episode done (RUN/episode-i/DONE).

        With the positive-aware filter, pool i+1 is mined here, before this episode's corpus embeddings (which score its
        candidates) are removed; the loop then finds it done.

        Args:
            i: the episode.
        """
        model_state: dict = {}
        self.evaluate(i, self.encode(i, model_state), model_state)
        if _filter_needs_scores(self.args) and i < self.args.num_episodes:
            self.mine(i + 1)
        _drop_corpus_embeddings(self.folder, self.args, i)
        write_json(self.folder.done(i), {"finished": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def episode_zero(self) -> None:
        """The base model's rankings and evaluation, shared between runs through --base_cache_dir."""
        if self.folder.done(0).exists():
            return
        shared = base_cache_dir(self.args)
        if restore_episode_zero(shared, self.folder):
            if "lookahead" in self.args.sources() and not self.folder.ranking(0, "positives").exists():
                self.finish(0)
            return
        self.finish(0)
        share_episode_zero(self.folder, shared)

    def select(self) -> dict | None:
        """Choose the episode to keep on dev, compare it with the start and BM25 (`judge_run`: RUN/best.json, RUN/best).

        Returns:
            The verdict, or None without an evaluated test split.
        """
        a, evals = self.args, self.collections.evals
        if "main" not in evals:
            return None
        dev = evals.get("dev")
        return judge_run(self.folder, evals["main"].qrels, a.selection_metric, dev.name if dev is not None else None,
                         _bm25_baseline(self.folder, a, evals["main"]), seed=a.seed,
                         dev_qrels=dev.qrels if dev is not None else None, rule=a.selection_rule)

    def analyze(self) -> Path:
        """The forgetting and convergence report of this run (RUN/report/), unless it is there.

        Returns:
            The report's folder.
        """
        out = self.folder.report_dir
        if (out / "analysis.json").exists():
            return out
        started = time.perf_counter()
        analyze_and_report([self.folder.root], out, max_queries=self.args.analysis_max_queries,
                           probe_k=self.args.analysis_probe_k, cache_dir=self.caches.cache_dir, device=self.device,
                           progress=self.args.progress)
        self.folder.record("analyze", time.perf_counter() - started)
        return out

    def run(self) -> Path:
        """Check the settings, open the run folder, then run every unfinished episode, select and analyze.

        Returns:
            The run folder.
        """
        a = self.args
        setup_logging()
        check_settings(a, self.folder, self.caches.cache_dir, self.device)
        self.folder.open(a, data=self.collections.report(), collections=self.collections.files())
        logger.info("run %s: %d episodes, negatives %s (%s), device %s", self.folder.root, a.num_episodes,
                    a.negatives, ",".join(sorted(a.sources())), self.device)
        self.episode_zero()
        for i in range(1, a.num_episodes + 1):
            if self.folder.done(i).exists():
                logger.info("episode %d is complete; skipping", i)
                continue
            logger.info("episode %d: mining", i)
            self.mine(i)
            logger.info("episode %d: training", i)
            self.train(i)
            logger.info("episode %d: encoding and evaluating", i)
            self.finish(i)
        self.select()
        if a.analyze:
            self.analyze()
        return self.folder.root


def run_episodes(args: EpisodeArguments) -> Path:
    """Run (or resume) ANCE-Tele episodes as configured.

    Args:
        args: the run's settings.

    Returns:
        The run folder.
    """
    return EpisodeRunner(args).run()


# ---- the pieces of the steps ----

def _search(folder: RunFolder, i: int, queries: Path, corpus: Path, name: str, depth: int, args: EpisodeArguments,
            device: str) -> Path:
    """Episode i's ranking of the corpus for the queries (RUN/episode-i/rankings/<name>.trec)."""
    out = folder.ranking(i, name)
    folder.step(f"episode-{i}/search-{name}", out, lambda: search_to_file(
        queries, corpus, out, depth, backend=args.search_backend, device=device, tag=f"episode-{i}",
        progress=args.progress))
    return out


def _bm25(folder: RunFolder, args: EpisodeArguments, collection: Collection, name: str) -> Path:
    """BM25's run of a collection's queries (RUN/bm25/<name>.trec), made once per run."""
    out = folder.bm25_run(name)
    folder.step(f"bm25/{name}", out, lambda: bm25_run_to_file(
        collection, folder.bm25_index, out, k=max(args.depth, args.eval_depth)))
    return out


def _bm25_baseline(folder: RunFolder, args: EpisodeArguments, collection: Collection) -> Path | None:
    """BM25's run of the test queries (RUN/bm25/test.trec), unless --baselines none, or auto without Pyserini."""
    if args.baselines == "none":
        return None
    if args.baselines == "auto":
        try:
            ensure_pyserini()
        except PyseriniUnavailableError as e:
            logger.info("no BM25 baseline (--baselines auto): %s", e)
            return None
    return _bm25(folder, args, collection, "test")


def _mining_positives(folder: RunFolder, args: EpisodeArguments, collection: Collection, i: int
                      ) -> dict[str, list[str]]:
    """The positives pool i+1 gives each training query: the judged ones and, for a QA collection, the answer passages
    `mine_episode` promotes from episode i's rankings."""
    if not collection.answers:
        return {q: collection.positives(q) for q in collection.queries}
    sources = args.sources()
    return mining_positives(collection, depth=args.depth,
                            query_run=folder.ranking(i, "queries") if "ann" in sources else None,
                            bm25_run=_bm25(folder, args, collection, "train") if "bm25" in sources else None)


def _positive_embeddings(folder: RunFolder, i: int, corpus: Path, positives: Callable[[], dict]) -> Path:
    """Lookahead queries: passage-encoder vectors of the positives pool i+1 will hold (QA: promoted answer passages
    too), read shard by shard from memory-mapped corpus rows; `positives()` is called only when the step runs."""
    prefix = folder.embeddings(i, "positives")

    def work():
        save_embeddings(prefix, *load_rows(corpus, {d for ps in positives().values() for d in ps}))

    folder.step(f"episode-{i}/positives", prefix, work, done=lambda: is_complete(prefix),
                files=lambda: [npy_path(prefix), ids_path(prefix)])
    return prefix


def _store_scores(folder: RunFolder, i: int, queries: Path, corpus: Path, positives: Callable[[], dict],
                  probe_k: int) -> Path:
    """S_i(q, d) of pools 1..i and the analysis probe, from the embeddings just made, so the forgetting analysis never
    encodes again; streamed a query at a time (`store_episode_scores`)."""
    out = folder.scores(i)

    def work():
        base_ranking = folder.ranking(0, "queries")
        # queries of pool i+1 that no earlier pool holds keep their mining positives
        written = store_episode_scores(out, EmbeddingScorer(queries, corpus), [folder.pool(j) for j in range(1, i + 1)],
                                       positives(), base_ranking if base_ranking.exists() else None, probe_k)
        logger.info("episode %d: stored %d scores -> %s", i, written, out)

    folder.step(f"episode-{i}/scores", out, work)
    return out


def _filter_needs_scores(args: EpisodeArguments) -> bool:
    return args.max_negative_ratio is not None or args.negative_margin is not None or args.train_positives != "all"


def _drop_corpus_embeddings(folder: RunFolder, args: EpisodeArguments, i: int) -> None:
    """Remove episode i's corpus embeddings (the bulk of a run's disk; rebuilt cheaply), unless kept."""
    if not args.keep_embeddings:
        for p in folder.embeddings(i).glob("corpus*"):
            p.unlink()

