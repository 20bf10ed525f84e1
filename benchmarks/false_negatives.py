"""How many mined negatives are judged relevant: false negatives by source (ANN, lookahead, BM25).

Training sets such as MS MARCO or SciFact label one or two positives per query, so a "negative" mined from a
dense or BM25 ranking may well be relevant. Their qrels cannot show it; TREC DL 2019's deep judgments can.
This benchmark mines negatives for the DL19 queries exactly as the episode runner does (the project's
`ann_negatives`, `lookahead_negatives` and `bm25_negatives` hooks), pretending each query has one labelled
positive (its highest-graded passage, as MS MARCO's sparse labels would give), and counts how many of the
mined negatives the TREC assessors judged relevant (grade >= 1 and >= 2).

    python benchmarks/false_negatives.py --out benchmarks/results/false_negatives.json \
        --model base=MODEL_DIR [--model tele=RUN/episode-3/model ...]

Reading the counts: the slice (`../shared/data/msmarco-dl19-subset`) holds every judged passage of the 43
judged queries and little else, so relevant passages are far denser in it than in the full 8.8M-passage
collection and absolute rates are much higher than MS MARCO training would see; grade-0 judgments were dropped
from the slice, so "not judged relevant" means judged non-relevant or unjudged. Compare the sources and the
models with each other and with `random`, the share expected from negatives drawn uniformly from the slice.

The positive-aware filter as a false-negative detector (`filter` in the result, per model and source): each
setting of `tevatron_tele.mining.filters` (--max_negative_ratio, --negative_margin, --skip_top) is applied, as
the runner applies it, to every candidate of the top 200 (before sampling), scored by the mining model's
S(q, d) (for lookahead and BM25 candidates too), and the candidates it removes are compared with the judgments:
the share of judged-relevant candidates removed (false negatives caught) and of the others kept (hard
negatives spared), and the judged-relevant share among what is left.
"""
from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
from machine import machine_info  # noqa: E402

from tevatron_tele.utils import setup_logging, write_json  # noqa: E402

logger = logging.getLogger("false_negatives")

# (depth, sample): what the runner mines by default (30 drawn from the top 200) and the hardest ten.
SETTINGS = ((200, 30), (10, None))
# positive-aware filter settings measured on the top-200 candidates: name -> FilterSettings keyword arguments
FILTERS = {"none": {}, "ratio 0.90": {"max_negative_ratio": 0.90}, "ratio 0.95": {"max_negative_ratio": 0.95},
           "ratio 0.98": {"max_negative_ratio": 0.98}, "margin 0": {"negative_margin": 0.0},
           "margin 0.05": {"negative_margin": 0.05}, "margin 0.10": {"negative_margin": 0.10},
           "margin 0.15": {"negative_margin": 0.15}, "margin 0.20": {"negative_margin": 0.20},
           "skip 10": {"skip_top": 10}, "skip 30": {"skip_top": 30}}
FILTER_DEPTH = 200


def sparse_positives(qrels: dict[str, dict[str, int]], seed: int) -> dict[str, list[str]]:
    """One labelled positive per judged query: a highest-graded passage (ties broken by a seeded draw)."""
    rng = random.Random(seed)
    out = {}
    for qid in sorted(qrels):
        graded = qrels[qid]
        top = max(graded.values())
        if top <= 0:
            continue
        out[qid] = [rng.choice(sorted(d for d, g in graded.items() if g == top))]
    return out


def judged_share(negatives: dict[str, list[str]], qrels: dict[str, dict[str, int]], min_grade: int) -> dict:
    """Share of the mined negatives judged relevant at `min_grade` or more: pooled and averaged per query."""
    hits = total = 0
    per_query = []
    for qid, docs in negatives.items():
        if not docs:
            continue
        rel = sum(1 for d in docs if qrels.get(qid, {}).get(d, 0) >= min_grade)
        hits += rel
        total += len(docs)
        per_query.append(rel / len(docs))
    return {"negatives": total, "judged_relevant": hits, "pooled_share": hits / total if total else None,
            "mean_per_query_share": float(np.mean(per_query)) if per_query else None}


def random_share(qrels: dict[str, dict[str, int]], positives: dict[str, list[str]], n_docs: int,
                 min_grade: int) -> float:
    """Expected share for negatives drawn uniformly from the corpus (positive excluded), averaged over queries."""
    shares = []
    for qid, pos in positives.items():
        rel = sum(1 for d, g in qrels[qid].items() if g >= min_grade and d not in pos)
        shares.append(rel / (n_docs - len(pos)))
    return float(np.mean(shares))


def rank_of_positive(run: dict[str, list[tuple[str, float]]], positives: dict[str, list[str]]) -> float:
    """Mean reciprocal rank of the labelled positive in the query's ranking (0 when not retrieved)."""
    rr = []
    for qid, pos in positives.items():
        ranked = [d for d, _ in run.get(qid, [])]
        rr.append(1.0 / (ranked.index(pos[0]) + 1) if pos[0] in ranked else 0.0)
    return float(np.mean(rr))


def dense_rankings(model_dir: str, collection, positives: dict[str, list[str]], depth: int, cache_dir: Path,
                   args) -> tuple[dict, dict, float, object]:
    """The model's ranking of each query and of each labelled positive passage (its lookahead ranking), and a
    scorer of its S(q, d) (the filter's scores)."""
    import torch

    from tevatron_tele.backends import load_encoder
    from tevatron_tele.data.token_cache import corpus_token_cache, query_token_cache
    from tevatron_tele.retrieval.embeddings import save_embeddings
    from tevatron_tele.retrieval.encode import encode_texts
    from tevatron_tele.retrieval.scoring import EmbeddingScorer
    from tevatron_tele.retrieval.search import search

    started = time.perf_counter()
    torch.manual_seed(0)
    model, tokenizer = load_encoder(model_dir, "cpu", pooling=args.pooling, normalize=args.normalize)
    corpus_cache = corpus_token_cache(collection, tokenizer, args.p_max_len, cache_dir)
    query_cache = query_token_cache(collection, tokenizer, args.q_max_len, cache_dir)
    corpus_emb = encode_texts(model, tokenizer, corpus_cache, is_query=False, max_len=args.p_max_len,
                              batch_size=args.batch_size, progress=args.progress)
    prefix = Path(tempfile.mkdtemp(dir=cache_dir)) / "corpus"
    save_embeddings(prefix, corpus_emb, list(corpus_cache.ids))
    qids = sorted(positives)
    query_emb = encode_texts(model, tokenizer, query_cache, qids, is_query=True, max_len=args.q_max_len,
                             batch_size=args.batch_size, progress=args.progress)
    save_embeddings(prefix.with_name("queries"), query_emb, qids)
    query_run = search(query_emb, qids, prefix, depth + 1, progress=False)
    pos_ids = sorted({p for ps in positives.values() for p in ps})
    rows = [corpus_cache.position(p) for p in pos_ids]
    positive_run = search(corpus_emb[rows], pos_ids, prefix, depth + 1, progress=False)
    scorer = EmbeddingScorer(prefix.with_name("queries"), prefix)
    return query_run, positive_run, time.perf_counter() - started, scorer


def count_sources(runs: dict[str, dict], positives: dict, qrels: dict, seed: int) -> dict:
    from tevatron_tele.mining.tele import ann_negatives, bm25_negatives, lookahead_negatives

    miners = {"ann": lambda r, d, s: ann_negatives(r, positives, d, s, seed),
              "lookahead": lambda r, d, s: lookahead_negatives(r, positives, d, s, seed),
              "bm25": lambda r, d, s: bm25_negatives(r, positives, d, s, seed)}
    out = {}
    for source, run in runs.items():
        for depth, sample in SETTINGS:
            negatives = miners[source](run, depth, sample)
            key = f"{source}@top{depth}" + (f"-sample{sample}" if sample else "")
            out[key] = {f"grade>={g}": judged_share(negatives, qrels, g) for g in (1, 2)}
    return out


def _miners(positives: dict, seed: int) -> dict:
    from tevatron_tele.mining.tele import ann_negatives, bm25_negatives, lookahead_negatives

    return {"ann": lambda r, keep=None: ann_negatives(r, positives, FILTER_DEPTH, None, seed, keep=keep),
            "lookahead": lambda r, keep=None: lookahead_negatives(r, positives, FILTER_DEPTH, None, seed, keep=keep),
            "bm25": lambda r, keep=None: bm25_negatives(r, positives, FILTER_DEPTH, None, seed, keep=keep)}


def filter_detection(candidates: dict[str, list[str]], kept: dict[str, list[str]], qrels: dict,
                     min_grade: int) -> dict:
    """How the filter's removals (candidates minus kept, per query) match the judgments at `min_grade`."""
    rel = rel_removed = other = other_kept = kept_n = emptied = 0
    for qid, docs in candidates.items():
        left = set(kept.get(qid, []))
        emptied += bool(docs) and not left
        kept_n += len(left)
        for d in docs:
            if qrels.get(qid, {}).get(d, 0) >= min_grade:
                rel += 1
                rel_removed += d not in left
            else:
                other += 1
                other_kept += d in left
    left_rel = rel - rel_removed
    removed = rel_removed + other - other_kept
    return {"candidates": rel + other, "judged_relevant": rel, "relevant_removed": rel_removed,
            "relevant_removed_share": rel_removed / rel if rel else None,
            "removed": removed, "removed_relevant_share": rel_removed / removed if removed else None,
            "not_relevant": other, "not_relevant_kept": other_kept,
            "not_relevant_kept_share": other_kept / other if other else None,
            "kept": kept_n, "kept_relevant_share": left_rel / kept_n if kept_n else None,
            "kept_per_query": kept_n / len(candidates) if candidates else None, "queries_emptied": emptied}


def filter_sources(runs: dict[str, dict], positives: dict, qrels: dict, scorer, seed: int) -> dict:
    """Per source and FILTERS setting, the filter's removals among the top-FILTER_DEPTH candidates, judged."""
    from tevatron_tele.mining.filters import FilterSettings, PositiveAwareFilter

    miners = _miners(positives, seed)
    out: dict = {}
    for source, run in runs.items():
        candidates = miners[source](run)
        out[source] = {}
        for name, options in FILTERS.items():
            settings = FilterSettings(**options)
            filt = PositiveAwareFilter(settings, positives, scorer)
            kept = miners[source](run, filt.keeper(source)) if settings.active else candidates
            out[source][name] = {f"grade>={g}": filter_detection(candidates, kept, qrels, g) for g in (1, 2)}
            if settings.active:
                out[source][name]["rules"] = filt.stats()["sources"][source]
    return out


def filter_table(result: dict, model: str, min_grade: int = 1) -> str:
    """A markdown table of one model's `filter` results, a row per source and setting: the judged-relevant
    candidates removed, the others kept, the judged-relevant share among the removed and among the kept, and
    the candidates kept per query."""
    block = result["models"][model]["filter"]
    keys = ("relevant_removed_share", "not_relevant_kept_share", "removed_relevant_share", "kept_relevant_share")
    lines = ["| source | setting | relevant removed | others kept | relevant among removed | relevant among kept "
             "| kept per query |", "|---|---|---|---|---|---|---|"]
    for source, settings in block.items():
        for name in FILTERS:
            c = settings[name][f"grade>={min_grade}"]
            cells = ["-" if c[k] is None else f"{c[k]:.1%}" for k in keys]
            lines.append(f"| {source} | {name} | " + " | ".join(cells) + f" | {c['kept_per_query'] or 0:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "msmarco-dl19-subset"),
                   help="A collection with deep graded judgments (default: the DL19 slice in ../shared/data).")
    p.add_argument("--split", default="test")
    p.add_argument("--model", action="append", required=True, metavar="NAME=DIR",
                   help="A model to mine with (several allowed), e.g. base=/path/to/all-MiniLM-L6-v2.")
    p.add_argument("--out", required=True, help="JSON result file.")
    p.add_argument("--cache_dir", default=None, help="Token caches and embeddings (default: a temporary folder).")
    p.add_argument("--pooling", default="mean")
    p.add_argument("--normalize", default=True, type=lambda s: s.lower() in ("1", "true", "yes"))
    p.add_argument("--q_max_len", type=int, default=32)
    p.add_argument("--p_max_len", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--seed", type=int, default=1, help="Breaks ties when picking the labelled positive; sampling.")
    p.add_argument("--no_bm25", action="store_true", help="Skip the BM25 source (no Java).")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--table", default=None, help="Also write the filter tables (markdown, grade >= 1 and >= 2).")
    args = p.parse_args(argv)
    setup_logging()

    from tevatron_tele.data.collections import load_collection

    collection = load_collection(args.data, args.split)
    qrels = {q: g for q, g in collection.qrels.items() if q in collection.queries}
    positives = sparse_positives(qrels, args.seed)
    depth = max(d for d, _ in SETTINGS)
    cache_dir = Path(args.cache_dir or tempfile.mkdtemp(prefix="false-negatives-"))
    cache_dir.mkdir(parents=True, exist_ok=True)
    logger.info("%s: %d judged queries, %d passages, %d judged pairs", args.data, len(positives),
                len(collection.corpus), sum(len(g) for g in qrels.values()))

    result: dict = {
        "collection": str(args.data), "split": args.split, "queries": len(positives),
        "passages": len(collection.corpus), "judged_pairs": sum(len(g) for g in qrels.values()),
        "positive_rule": "one highest-graded passage per query (seeded tie-break); every other passage is a candidate",
        "settings": {"depth_sample": [list(s) for s in SETTINGS], "filters": FILTERS, "filter_depth": FILTER_DEPTH,
                     "p_max_len": args.p_max_len,
                     "q_max_len": args.q_max_len, "pooling": args.pooling, "normalize": args.normalize,
                     "seed": args.seed},
        "random": {f"grade>={g}": random_share(qrels, positives, len(collection.corpus), g) for g in (1, 2)},
        "machine": machine_info(),
        "models": {},
    }
    bm25 = None
    if not args.no_bm25:
        from tevatron_tele.retrieval.bm25 import bm25_search, build_lucene_index

        started = time.perf_counter()
        index = build_lucene_index(collection.corpus, cache_dir / "lucene")
        bm25 = bm25_search(index, {q: collection.queries[q] for q in positives}, depth + 1)
        result["bm25"] = {"sources": count_sources({"bm25": bm25}, positives, qrels, args.seed),
                          "positive_mrr": rank_of_positive(bm25, positives),
                          "seconds": round(time.perf_counter() - started, 1)}
    for spec in args.model:
        name, _, model_dir = spec.partition("=")
        if not model_dir:
            p.error(f"--model wants NAME=DIR, got {spec!r}")
        query_run, positive_run, seconds, scorer = dense_rankings(model_dir, collection, positives,
                                                                  max(depth, FILTER_DEPTH), cache_dir, args)
        started = time.perf_counter()
        runs = {"ann": query_run, "lookahead": positive_run, **({"bm25": bm25} if bm25 is not None else {})}
        result["models"][name] = {
            "path": model_dir, "seconds": round(seconds, 1), "positive_mrr": rank_of_positive(query_run, positives),
            "sources": count_sources({"ann": query_run, "lookahead": positive_run}, positives, qrels, args.seed),
            "filter": filter_sources(runs, positives, qrels, scorer, args.seed)}
        result["models"][name]["filter_seconds"] = round(time.perf_counter() - started, 1)
        logger.info("%s: %s", name, {k: round(v["grade>=1"]["pooled_share"], 3)
                                     for k, v in result["models"][name]["sources"].items()})
    write_json(args.out, result)
    logger.info("wrote %s", args.out)
    if args.table:
        text = "".join(f"### {name}, grade >= {g}\n\n{filter_table(result, name, g)}\n"
                       for name in result["models"] for g in (1, 2))
        Path(args.table).write_text(text, encoding="utf-8")
        logger.info("wrote %s", args.table)


if __name__ == "__main__":
    main()
