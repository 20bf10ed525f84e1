"""Forgetting analysis of a run folder: score each episode's model on the pools and a probe, then apply `forgetting.py`.

Read from the run folder (paths of `data.run_folder.RunLayout`): the manifest's config (model_name_or_path, collection,
q_max_len, p_max_len, and passages for a DPR json collection), and of each episode its model (episode 0: the config's
base model), pool (i >= 1), stored scores, ranking of the training queries (`queries`) and eval.json.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

from ..backends import load_encoder
from ..data.collections import load_corpus
from ..data.pools import IndexedPool, PoolEntry
from ..data.run_folder import RunLayout
from ..data.token_cache import TokenCache, build_token_cache
from ..data.trec import IndexedRun
from ..retrieval.scoring import EmbeddingScorer, StoredScores, covers, save_scored_pairs, score_pairs, with_positives
from ..utils import PathLike, read_json
from .forgetting import (
    above_positive,
    as_pair_set,
    consecutive_overlap,
    convergence,
    forgetting_by_episode,
    source_contribution,
    top_k_negatives,
)

logger = logging.getLogger(__name__)

Probe = dict[str, list[str]]


class RunWorkspace:
    """What analysis needs from a run folder: its paths (`layout`, `path`, `name`), manifest config, episodes and pools.

    Args:
        path: the run folder.
        config: the manifest's config.
        episodes: every episode with a folder, ascending.
        pools: {episode: {query id: entry}} of the pools read (i >= 1).
    """

    def __init__(self, path: PathLike, config: dict, episodes: list[int],
                 pools: dict[int, Mapping[str, PoolEntry]] | None = None):
        self.layout = RunLayout(path)
        self.path, self.name = self.layout.root, self.layout.root.name
        self.config = config
        self.episodes = episodes
        self.pools = {} if pools is None else pools

    def model_dir(self, i: int) -> Path | None:
        """Episode i's model folder.

        Args:
            i: the episode.

        Returns:
            The folder (the base model for episode 0); None when it is missing.
        """
        if i == 0:
            base = self.config.get("model_name_or_path")
            return Path(base) if base else None
        path = self.layout.model(i)
        return path if path.is_dir() else None

    def ranking_path(self, i: int) -> Path:
        """Episode i's ranking of the training queries.

        Args:
            i: the episode.

        Returns:
            The run file's path.
        """
        return self.layout.ranking(i, "queries")

    def positives(self) -> dict[str, list[str]]:
        """Each training query's positives.

        Returns:
            {query id: positives}, as its first pool lists them.
        """
        out: dict[str, list[str]] = {}
        for pool in self.pools.values():
            for e in pool.values():  # an IndexedPool's values stream the file
                out.setdefault(e.query_id, list(e.positive_document_ids))
        return out

    def query_texts(self, qids: Iterable[str]) -> dict[str, str]:
        """The texts of these queries, as their pools hold them.

        Args:
            qids: query ids.

        Returns:
            {query id: text} (from the last pool holding each; queries in no pool are left out).
        """
        out: dict[str, str] = {}
        for q in qids:
            pool = next((pool for pool in reversed(self.pools.values()) if q in pool), None)
            if pool is not None:
                out[q] = pool[q].query_text
        return out

    def pool_lists(self, queries: AbstractSet[str]) -> tuple[dict[int, dict[str, list[str]]], dict[int, dict]]:
        """The negatives and the per-source lists of these queries in each pool, in pool order.

        Args:
            queries: the query ids wanted.

        Returns:
            ({episode: {qid: negatives}}, {episode: {qid: {source: negatives}}}).
        """
        negatives: dict[int, dict[str, list[str]]] = {}
        sources: dict[int, dict] = {}
        for i, pool in self.pools.items():
            entries = [pool[q] for q in pool if q in queries]  # looked up: only the wanted lines are read
            negatives[i] = {e.query_id: list(e.negative_document_ids) for e in entries}
            sources[i] = {e.query_id: e.sources for e in entries}
        return negatives, sources

    def ranking(self, i: int, queries: AbstractSet[str]) -> dict[str, list[tuple[str, float]]]:
        """Episode i's ranking of these queries (looked up in the run file: the others are not read).

        Args:
            i: the episode.
            queries: the query ids wanted.

        Returns:
            {query id: [(docid, score), ...]}.
        """
        run = IndexedRun(self.ranking_path(i))
        return {q: run[q] for q in run if q in queries}


def open_run(run_dir: PathLike) -> RunWorkspace:
    """Read the manifest of a run folder and index its pools.

    Args:
        run_dir: the run folder.

    Returns:
        Its RunWorkspace, pools as `IndexedPool`s (a query's entry read when asked).
    """
    layout = RunLayout(run_dir)
    manifest_path = layout.manifest_path
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} not found: not an episode run folder")
    manifest = read_json(manifest_path)
    config = manifest.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{manifest_path}: field 'config': missing or not an object")
    episodes = layout.episodes()
    ws = RunWorkspace(layout.root, config, episodes)
    for i in episodes:
        pool_path = layout.pool(i)
        if i >= 1 and pool_path.exists():
            ws.pools[i] = IndexedPool(pool_path)
    logger.info("run %s: episodes %s, pools for %s", layout.root, episodes, sorted(ws.pools))
    return ws


def sample_queries(qids: Sequence[str], max_queries: int | None) -> list[str]:
    """A deterministic sample of queries, the same for every run holding the same queries (hash order).

    Args:
        qids: query ids.
        max_queries: the sample's size; None or not positive: all of them.

    Returns:
        The sample, sorted.
    """
    ordered = sorted(set(qids), key=lambda q: (hashlib.md5(q.encode()).hexdigest(), q))
    return sorted(ordered if not max_queries or max_queries < 0 else ordered[:max_queries])


def build_probe(ranking: Mapping[str, Sequence[tuple[str, float]]], positives: Mapping[str, Sequence[str]],
                k: int, queries: Sequence[str] | None = None) -> Probe:
    """The probe: each training query's top-k passages in `ranking` (the base model's) minus its positives.

    Args:
        ranking: the base model's ranking of the training queries (an `IndexedRun` is read for `queries` only).
        positives: the training queries' positives.
        k: passages per query before the positives are removed.
        queries: the queries to probe (default: those of `positives`).

    Returns:
        {query id: probe negatives}, in ranking order, queries left without any left out.
    """
    wanted = set(queries) if queries is not None else set(positives)
    probe: Probe = {}
    for q in ranking:
        if q in wanted:
            docs = top_k_negatives({q: ranking[q]}, positives, k)[q]
            if docs:
                probe[q] = docs
    return probe


def probe_from_run(ws: RunWorkspace, k: int = 20, max_queries: int | None = None,
                   positives: Mapping[str, Sequence[str]] | None = None) -> Probe:
    """The probe of a run: its episode-0 ranking of the training queries (the base model's).

    Args:
        ws: the run.
        k: negatives per query.
        max_queries: the size of the deterministic query sample (None: every query).
        positives: the training queries' positives to sample from (default: those of this run's pools).

    Returns:
        query id -> its probe negatives.
    """
    path = ws.ranking_path(0)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the probe is built from the base model's ranking")
    positives = ws.positives() if positives is None else positives
    queries = sample_queries([q for q in positives if positives[q]], max_queries)
    return build_probe(IndexedRun(path), positives, k, queries)


def _token_caches(ws: RunWorkspace, tokenizer, qids: Sequence[str], docids: Sequence[str], cache_dir: Path
                  ) -> tuple[TokenCache, TokenCache]:
    """Token caches of just the queries and passages to score, with the corpus cache's text template."""
    texts = ws.query_texts(qids)
    missing = [q for q in qids if q not in texts]
    if missing:
        raise KeyError(f"{ws.path}: no query text in the pools for {len(missing)} queries, e.g. {missing[:3]}")
    corpus_path = ws.config.get("passages") or ws.config.get("collection")
    if not corpus_path:
        raise ValueError(f"{ws.layout.manifest_path}: field 'config.collection': missing")
    corpus = load_corpus(corpus_path)
    q_cache = build_token_cache(cache_dir / "queries", list(qids), [texts[q] for q in qids], tokenizer,
                                int(ws.config.get("q_max_len", 32)))
    sep = tokenizer.sep_token or ""  # the template of data.token_cache.corpus_token_cache
    p_texts = [corpus.passage_text(corpus.position(d), sep) for d in docids]
    p_cache = build_token_cache(cache_dir / "passages", list(docids), p_texts, tokenizer,
                                int(ws.config.get("p_max_len", 128)))
    return q_cache, p_cache


def _row_of(row: Mapping[str, float], docids: Iterable[str]) -> dict[str, float]:
    return {d: row[d] for d in docids}


def score_episodes(ws: RunWorkspace, pairs: Mapping[str, Sequence[str]], cache_dir: PathLike, *,
                   episodes: Sequence[int] | None = None, device: str = "cpu", batch_size: int = 64,
                   progress: bool = True, needed: Mapping[int, Mapping[str, Sequence[str]]] | None = None
                   ) -> dict[int, dict]:
    """The score table of each episode whose model exists, on the same `pairs`.

    An episode's stored `scores.npz` (written by the runner from the embeddings it had made anyway) is used when it
    covers `needed[i]`, and then the table holds just those; otherwise the pairs are encoded with its model.

    Args:
        ws: the run.
        pairs: {query id: docids}, positives included.
        cache_dir: folder of the token caches of the pairs' texts.
        episodes: the episodes (default: every trained one).
        device, batch_size, progress: where models run, items per forward pass, whether to show progress bars.
        needed: {episode: the pairs read from its table} (default: all `pairs`).

    Returns:
        {episode: {query id: {docid: score}}}.
    """
    cache_dir = Path(cache_dir)
    docids = sorted({d for ds in pairs.values() for d in ds})
    tables: dict[int, dict] = {}
    caches = None
    for i in episodes if episodes is not None else [i for i in ws.episodes if i >= 1]:
        stored = ws.layout.scores(i)
        if stored.exists():
            table = StoredScores(stored)  # rows read a query at a time: only the wanted pairs become dicts
            want = needed[i] if needed is not None and i in needed else pairs
            if covers(table, want):
                tables[i] = {q: _row_of(table[q], ds) for q, ds in want.items()}
                continue
            logger.info("%s does not cover the pairs asked for; encoding them with episode %d's model", stored, i)
        model_dir = ws.model_dir(i)
        if model_dir is None or not model_dir.exists():
            logger.warning("%s: episode %d has no model; it is left out of the forgetting analysis", ws.path, i)
            continue
        model, tokenizer = load_encoder(model_dir, device)
        if caches is None:  # every episode starts from the same base model, hence the same tokenizer
            caches = _token_caches(ws, tokenizer, sorted(pairs), docids, cache_dir)
        logger.info("scoring the analysis' pairs with %s", model_dir)
        tables[i] = score_pairs(model, tokenizer, *caches, pairs, q_max_len=int(ws.config.get("q_max_len", 32)),
                                p_max_len=int(ws.config.get("p_max_len", 128)), batch_size=batch_size,
                                dtype=ws.config.get("embedding_dtype", "float32"), progress=progress)
    return tables


def analysis_pairs(pool_negatives: Mapping[int, Mapping[str, Sequence[str]]],
                   probe: Mapping[str, Sequence[str]] | None,
                   positives: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Every pair the analysis scores: each query's negatives in any pool and in the probe, with its positives.

    Args:
        pool_negatives: {episode: {query id: negatives}}.
        probe: {query id: probe negatives}, or None.
        positives: each query's positives.

    Returns:
        {query id: its positives, then the sorted union of its negatives}.
    """
    merged: dict[str, set[str]] = {}
    for negs in [*pool_negatives.values(), probe or {}]:
        for q, ds in negs.items():
            merged.setdefault(q, set()).update(ds)
    return with_positives({q: sorted(ds) for q, ds in merged.items()}, positives)


def pairs_needed_by_episode(pool_negatives: Mapping[int, Mapping[str, Sequence[str]]],
                            probe: Mapping[str, Sequence[str]] | None,
                            positives: Mapping[str, Sequence[str]]) -> dict[int, dict[str, list[str]]]:
    """The pairs the measures read from each episode's scores.

    Args:
        pool_negatives, probe, positives: as for `analysis_pairs`.

    Returns:
        {i: `analysis_pairs` of the pools of episodes 1..i (learned then, forgotten later) and the probe}.
    """
    return {i: analysis_pairs({j: negs for j, negs in pool_negatives.items() if j <= i}, probe, positives)
            for i in sorted(pool_negatives)}


def iter_pairs_needed(pools: Sequence[Mapping[str, PoolEntry]], more_positives: Mapping[str, Sequence[str]],
                      probe_ranking: Mapping[str, Sequence[tuple[str, float]]] | None, probe_k: int
                      ) -> Iterator[tuple[str, list[str]]]:
    """What `pairs_needed_by_episode(...)[i]` holds for pools 1..i and the probe, one query at a time.

    A query's positives are those of its first pool, else `more_positives`; its probe is the top `probe_k` of
    `probe_ranking` without them, as in `build_probe`. Pools and ranking are read as mappings (`IndexedPool`,
    `IndexedRun`), so the runner stores an episode's scores without holding either in memory.

    Args:
        pools: pools 1..i, each {query id: entry}.
        more_positives: positives of queries in no pool (e.g. pool i+1's mining positives).
        probe_ranking: the base model's ranking of the training queries, or None (no probe).
        probe_k: probe negatives per query.

    Returns:
        (query id, its positives then the sorted union of its pool and probe negatives), in the order of the queries'
        first appearance (pools, then `more_positives`).
    """
    for qid in dict.fromkeys(itertools.chain(*pools, more_positives)):
        entries = [pool[qid] for pool in pools if qid in pool]
        positives = list(entries[0].positive_document_ids) if entries else list(more_positives[qid])
        probe = []
        if probe_ranking is not None and qid in probe_ranking:
            probe = top_k_negatives({qid: probe_ranking[qid]}, {qid: positives}, probe_k)[qid]
        if not entries and not probe:
            continue
        merged = set(probe).union(*(e.negative_document_ids for e in entries))
        yield qid, with_positives({qid: sorted(merged)}, {qid: positives})[qid]


def store_episode_scores(path: PathLike, scorer: EmbeddingScorer, pool_paths: Sequence[PathLike],
                         more_positives: Mapping[str, Sequence[str]], base_ranking: PathLike | None,
                         probe_k: int) -> int:
    """Write episode i's `scores.npz`: S_i(q, d) of every pair the analysis reads from it (`iter_pairs_needed`).

    Streamed a query at a time (rows are written as they are scored), so memory follows the file being written.

    Args:
        path: the .npz to write.
        scorer: episode i's scores, over the embeddings it made.
        pool_paths: pools 1..i.
        more_positives, probe_k: as for `iter_pairs_needed`.
        base_ranking: the base model's ranking of the training queries (the probe), or None.

    Returns:
        The number of pairs written.
    """
    pools = [IndexedPool(p) for p in pool_paths]
    probe_ranking = IndexedRun(base_ranking) if base_ranking is not None else None
    return save_scored_pairs(path, scorer, iter_pairs_needed(pools, more_positives, probe_ranking, probe_k))


def analyze_run(
    run_dir: PathLike | RunWorkspace,
    probe: Mapping[str, Sequence[str]] | None = None,
    *,
    probe_k: int = 20,
    overlap_k: int = 100,
    max_queries: int | None = None,
    queries: Iterable[str] | None = None,
    cache_dir: PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = True,
) -> dict:
    """Forgetting (own pools and probe), negative overlap, pool composition and convergence of one run.

    Args:
        run_dir: the run folder, or its opened workspace.
        probe: {query id: negatives}, shared by all runs compared (default: this run's own, `probe_from_run`).
        probe_k, overlap_k: depths of the default probe and of the ANN overlap.
        max_queries: the size of the deterministic sample of training queries analysed (None: all).
        queries: that sample, when given (shared by several runs, see `analyze_runs`).
        cache_dir: folder of the token caches (default: a temporary one).
        device, batch_size, progress: as for `score_episodes`.

    Returns:
        {"run": its path, `summarize_run`'s measures, "queries": the number analysed}.
    """
    ws = run_dir if isinstance(run_dir, RunWorkspace) else open_run(run_dir)
    positives = ws.positives()
    if queries is None:
        queries = set(sample_queries([q for q in positives if positives[q]], max_queries))
    else:  # a sample shared by several runs: this run is analysed on the part its pools hold
        queries = {q for q in queries if positives.get(q)}
    if probe is None and ws.ranking_path(0).exists():
        probe = probe_from_run(ws, probe_k, max_queries)
    probe = {q: list(d) for q, d in (probe or {}).items() if q in positives and positives[q]}
    dropped = len(probe) - len({q for q in probe if q in queries})
    probe = {q: d for q, d in probe.items() if q in queries}
    if dropped:
        logger.info("%s: %d probe queries are outside the sampled training queries", ws.path, dropped)

    pool_negatives, sources = ws.pool_lists(queries)
    pairs = analysis_pairs(pool_negatives, probe, positives)

    with tempfile.TemporaryDirectory(prefix="tele-analysis-") as tmp:
        tables = score_episodes(ws, pairs, Path(cache_dir) if cache_dir else Path(tmp), device=device,
                                batch_size=batch_size, progress=progress,
                                needed=pairs_needed_by_episode(pool_negatives, probe, positives))

    rankings = {i: ws.ranking(i, queries) for i in ws.episodes if ws.ranking_path(i).exists()}
    evals = {i: read_json(ws.layout.eval(i)) for i in ws.episodes if ws.layout.eval(i).exists()}
    summary = summarize_run(ws.name, ws.episodes, tables, positives, pool_negatives, sources, probe,
                            rankings, evals, overlap_k=overlap_k)
    return {"run": str(ws.path), **summary, "queries": len(queries)}


def summarize_run(
    name: str,
    episodes: Sequence[int],
    tables: Mapping[int, Mapping[str, Mapping[str, float]]],
    positives: Mapping[str, Sequence[str]],
    pool_negatives: Mapping[int, Mapping[str, Sequence[str]]],
    pool_sources: Mapping[int, Mapping[str, Mapping[str, Sequence[str]]]],
    probe: Mapping[str, Sequence[str]] | None,
    rankings: Mapping[int, Mapping[str, Sequence[tuple[str, float]]]],
    evals: Mapping[int, Mapping],
    *,
    overlap_k: int = 100,
) -> dict:
    """Every measure of one run from in-memory inputs, all keyed by episode.

    Args:
        name, episodes: the run's name and episodes.
        tables: score tables of the trained episodes (i >= 1).
        positives: each query's positives.
        pool_negatives, pool_sources: {episode: {query id: negatives}}, {episode: {query id: {source: negatives}}}.
        probe: {query id: probe negatives}, or None.
        rankings, evals: {episode: its ranking of the training queries}, {episode: its eval.json}.
        overlap_k: depth of the ANN overlap.

    Returns:
        {"name", "episodes", "scored_episodes", "probe", "forgetting", "ann_overlap", "ann_overlap_k", "pool_overlap",
        "sources", "convergence"}.
    """
    trained = [i for i in sorted(tables) if i >= 1]
    own = forgetting_by_episode({i: pool_negatives[i] for i in trained if i in pool_negatives}, tables, positives)
    probe = probe or {}
    on_probe = forgetting_by_episode({i: probe for i in trained}, tables, positives) if probe else None
    probe_pairs = as_pair_set(probe, positives)
    probe_above = []
    for i in trained:
        n = len(above_positive(probe_pairs, tables[i], positives))
        fraction = n / len(probe_pairs) if probe_pairs else None
        probe_above.append({"episode": i, "above_positive": n, "fraction": fraction})
    ann = {i: top_k_negatives(r, positives, overlap_k) for i, r in rankings.items()}
    sources = {str(i): source_contribution(pool_sources[i], tables[i], positives) for i in trained if i in pool_sources}
    return {
        "name": name,
        "episodes": sorted(episodes),
        "scored_episodes": trained,
        "probe": {"queries": len(probe), "pairs": len(probe_pairs), "above_positive": probe_above},
        "forgetting": {"own_pool": own, "probe": on_probe},
        "ann_overlap": consecutive_overlap(ann) if len(ann) > 1 else [],
        "ann_overlap_k": overlap_k,
        "pool_overlap": consecutive_overlap(pool_negatives) if len(pool_negatives) > 1 else [],
        "sources": sources,
        "convergence": convergence(evals) if evals else None,
    }


def shared_query_sample(workspaces: Sequence[RunWorkspace], max_queries: int | None
                        ) -> tuple[dict[str, list[str]], list[str]]:
    """One query sample for several runs, drawn from every run's training queries: a run whose filter emptied some
    queries' pools (they are then missing from its pools) must not shift the sample of the others.

    Args:
        workspaces: the runs.
        max_queries: the sample's size (None: every query).

    Returns:
        (the positives of every training query with one, in any run's pools; the sampled query ids).
    """
    positives: dict[str, list[str]] = {}
    for ws in workspaces:
        for q, docs in ws.positives().items():
            if docs:
                positives.setdefault(q, list(docs))
    return positives, sample_queries(list(positives), max_queries)


def analyze_runs(run_dirs: Sequence[PathLike], *, probe: Mapping[str, Sequence[str]] | None = None,
                 probe_k: int = 20, max_queries: int | None = None, probe_source: str | None = None,
                 **kwargs) -> dict:
    """Several runs on one shared probe (by default built from the first run's base-model ranking).

    Args:
        run_dirs: run folders.
        probe: {query id: [document id, ...]} to measure forgetting on (default: `probe_from_run` of the first run).
        probe_k: depth of the default probe.
        max_queries: training queries analysed (a deterministic sample; None for all).
        probe_source: where a given probe came from, for the report (default: the first run).
        **kwargs: `analyze_run`'s options (overlap_k, cache_dir, device, batch_size, progress).

    Returns:
        {"probe": {queries, pairs, k, from}, "runs": [analyze_run's result per run]}.
    """
    if not run_dirs:
        raise ValueError("no run folders given")
    workspaces = [open_run(r) for r in run_dirs]
    positives, sample = shared_query_sample(workspaces, max_queries)
    if probe is None:
        probe = probe_from_run(workspaces[0], probe_k, max_queries, positives=positives)
    collections = {str(ws.config.get("collection")) for ws in workspaces}
    if len(collections) > 1:
        logger.warning("runs use different collections %s: the shared probe may not fit them all", collections)
    runs = [analyze_run(ws, probe, probe_k=probe_k, queries=sample, **kwargs) for ws in workspaces]
    return {"probe": {"queries": len(probe), "pairs": sum(len(d) for d in probe.values()), "k": probe_k,
                      "from": probe_source or str(run_dirs[0])}, "runs": runs}
