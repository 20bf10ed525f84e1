"""Retrieval quality: MRR@k, Recall@k, nDCG@k (ir-measures / pytrec_eval, or Pyserini's trec_eval) and top-k answer
accuracy for QA collections (DPR's rule).

Conventions shared by both backends, so their numbers agree exactly:
- relevance for MRR and Recall is grade >= 1; nDCG uses the grade itself as gain;
- only queries with at least one relevant judgement are scored, and the mean is over all of them: a query missing from
  the run scores 0 (trec_eval's `-c`);
- MRR@k sees the top k of each query after trec_eval's ordering (score descending, ties by docid descending), as
  `trec_eval -M k -m recip_rank` does.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import ir_measures
from ir_measures import RR, R, nDCG

from ..data.collections import Collection, Corpus, collection_splits, load_collection, read_qrels
from ..data.trec import write_qrels
from ..mining.answers import has_answer as _has_answer
from ..retrieval import java
from ..utils import PathLike, write_json

logger = logging.getLogger(__name__)

# The metric names, defined here only: the default of selection and verdict, what `evaluate_run` reports, and the
# order in which reports list what the runs have (QA collections report `Top{k}` for each of DEFAULT_QA_KS).
DEFAULT_METRIC = "nDCG@10"
DEFAULT_MEASURES = ("MRR@10", DEFAULT_METRIC, "R@20", "R@100", "R@1000")
DEFAULT_QA_KS = (5, 20, 100)
PREFERRED_METRICS = (DEFAULT_METRIC, "MRR@10", "Top20", "R@100", "R@1000", "R@20", "Top5", "Top100")
Qrels = Mapping[str, Mapping[str, int]]
Ranking = Mapping[str, Sequence[tuple[str, float]]]


@dataclass(frozen=True)
class Measure:
    """One measure by name: kind is 'rr', 'recall' or 'ndcg'; cutoff is the depth k."""

    name: str
    kind: str
    cutoff: int


_MEASURE_RE = re.compile(r"^(mrr|rr|r|recall|ndcg)@(\d+)$", re.IGNORECASE)
_KINDS = {"mrr": "rr", "rr": "rr", "r": "recall", "recall": "recall", "ndcg": "ndcg"}


def parse_measure(name: str) -> Measure:
    """The measure a name stands for.

    Args:
        name: 'MRR@10' / 'RR@10', 'R@100' / 'Recall@100' or 'nDCG@10'.

    Returns:
        The Measure; a ValueError for any other name.
    """
    m = _MEASURE_RE.match(name.strip())
    if not m or int(m.group(2)) < 1:
        raise ValueError(f"unknown measure {name!r}: expected MRR@k, R@k (Recall@k) or nDCG@k with k >= 1")
    return Measure(name.strip(), _KINDS[m.group(1).lower()], int(m.group(2)))


def relevant_qrels(qrels: Qrels) -> dict[str, dict[str, int]]:
    """The queries a measure is defined for.

    Args:
        qrels: {query id: {docid: grade}}.

    Returns:
        The queries with at least one judgement of grade >= 1, with all their judgements.
    """
    return {q: {d: int(g) for d, g in docs.items()} for q, docs in qrels.items() if any(g >= 1 for g in docs.values())}


def write_trec_qrels(path: PathLike, qrels: Qrels) -> Path:
    """Write the judged queries' qrels as 4-column TREC qrels (`qid 0 docid grade`), atomically.

    Pyserini's trec_eval reads this file (a BEIR qrels tsv's header is a "Malformed line 1" there), and `trec_eval -c`
    on it gives the figures of `evaluate_run`, which scores only the judged queries.

    Args:
        path: the file to write.
        qrels: {query id: {docid: grade}}.

    Returns:
        `path`.
    """
    judged = relevant_qrels(qrels or {})
    if not judged:
        raise ValueError("qrels hold no query with a relevant judgement (grade >= 1): no TREC qrels to write")
    write_qrels(path, judged)
    return Path(path)


def _trec_order(ranked: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """A query's results as trec_eval orders them: score descending, ties by docid descending."""
    return sorted(ranked, key=lambda ds: (ds[1], ds[0]), reverse=True)


def _scored_run(run: Ranking, judged: Iterable[str], m: Measure | None = None) -> dict:
    """The judged queries' results for pytrec_eval; RR (no cutoff there) gets each list cut at k, as `trec_eval -M k`.
    """
    wanted = set(judged)
    if m is not None and m.kind == "rr":
        run = {q: _trec_order(ranked)[:m.cutoff] for q, ranked in run.items()}
    return {q: {d: float(s) for d, s in ranked} for q, ranked in run.items() if q in wanted}


def _ir_measure(m: Measure):
    return RR(rel=1) if m.kind == "rr" else R(rel=1) @ m.cutoff if m.kind == "recall" else nDCG @ m.cutoff


def evaluate_run(run: Ranking, qrels: Qrels, measures: Sequence[str] = DEFAULT_MEASURES) -> dict[str, float]:
    """Mean of each measure over the judged queries, computed by ir-measures' pytrec_eval provider.

    Args:
        run: {query id: [(docid, score), ...]}.
        qrels: {query id: {docid: grade}}.
        measures: measure names (`parse_measure`).

    Returns:
        {measure name: mean}, in the order of `measures`.
    """
    parsed = [parse_measure(m) for m in measures]
    judged = relevant_qrels(qrels)
    if not judged:
        raise ValueError("qrels hold no query with a relevant judgement (grade >= 1)")
    results: dict[str, float] = {}
    plain = {m.name: _ir_measure(m) for m in parsed if m.kind != "rr"}
    if plain:
        agg = ir_measures.pytrec_eval.evaluator(list(plain.values()), judged).calc_aggregate(_scored_run(run, judged))
        results.update({name: float(agg[measure]) for name, measure in plain.items()})
    for m in parsed:
        if m.kind == "rr":
            agg = ir_measures.pytrec_eval.evaluator([RR(rel=1)], judged).calc_aggregate(_scored_run(run, judged, m))
            results[m.name] = float(agg[RR(rel=1)])
    return {m.name: results[m.name] for m in parsed}


def per_query_values(run: Ranking, qrels: Qrels, measure: str) -> dict[str, float]:
    """One measure per judged query (0 for a query the run misses), computed as `evaluate_run` computes its mean.

    Args:
        run: {query id: [(docid, score), ...]}.
        qrels: {query id: {docid: grade}}.
        measure: e.g. 'nDCG@10', 'MRR@10', 'R@100'.

    Returns:
        {query id: value} over the queries with a relevant judgement.
    """
    m = parse_measure(measure)
    judged = relevant_qrels(qrels)
    values = dict.fromkeys(judged, 0.0)
    for row in ir_measures.pytrec_eval.evaluator([_ir_measure(m)], judged).iter_calc(_scored_run(run, judged, m)):
        values[row.query_id] = float(row.value)
    return values


# ---- Pyserini's trec_eval (Java) -------------------------------------------------------------------

def _java_env() -> dict[str, str]:
    """The environment with a Java 21+ runtime as JAVA_HOME and first on PATH (Pyserini's jars need it, and its
    trec_eval runs the first `java` on PATH); unchanged, with a warning, when there is none."""
    try:
        return java.java_env(dict(os.environ))
    except java.PyseriniUnavailableError as e:
        logger.warning("%s; trec_eval will use the system java", e)
        return dict(os.environ)


_TREC_NAMES = {"rr": "recip_rank", "recall": "recall_{k}", "ndcg": "ndcg_cut_{k}"}
_LINE_RE = re.compile(r"^(\S+)\s+all\s+(\S+)\s*$")


def _trec_eval(args: list[str], qrels_path: Path, run_path: Path, timeout: float) -> dict[str, float]:
    cmd = [sys.executable, "-m", "pyserini.eval.trec_eval", "-c", *args, str(qrels_path), str(run_path)]
    env = _java_env()
    env.setdefault("OPENAI_API_KEY", "unused")  # some Pyserini versions build an OpenAI client on import
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    values = {}
    for line in proc.stdout.splitlines():
        m = _LINE_RE.match(line)
        if m:
            try:
                values[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    if proc.returncode != 0 or not values:
        raise RuntimeError(
            f"trec_eval failed (exit {proc.returncode}): {' '.join(cmd)}\nstdout: {proc.stdout[-2000:]}\n"
            f"stderr: {proc.stderr[-2000:]}"
        )
    return values


def evaluate_with_trec_eval(
    run_path: PathLike, qrels_path: PathLike, measures: Sequence[str] = DEFAULT_MEASURES, *, timeout: float = 600
) -> dict[str, float]:
    """The same measures through `python -m pyserini.eval.trec_eval` (Java).

    Args:
        run_path: a TREC run file.
        qrels_path: qrels in any format `read_qrels` accepts (passed on as `write_trec_qrels` writes them).
        measures: measure names (`parse_measure`).
        timeout: seconds each trec_eval may take.

    Returns:
        {measure name: mean}, in the order of `measures`.
    """
    parsed = [parse_measure(m) for m in measures]
    judged = relevant_qrels(read_qrels(qrels_path))
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="trec-eval-") as tmp:
        qrels_file = Path(tmp) / "qrels.txt"
        write_qrels(qrels_file, judged)
        plain = [m for m in parsed if m.kind != "rr"]
        if plain:
            # one -m per measure with all its cutoffs: trec_eval keeps only the last `-m recall.k` given
            cutoffs: dict[str, list[str]] = {}
            for m in plain:
                cutoffs.setdefault(_TREC_NAMES[m.kind].split("_{")[0], []).append(str(m.cutoff))
            args = [arg for name, ks in cutoffs.items() for arg in ("-m", f"{name}.{','.join(ks)}")]
            out = _trec_eval(args, qrels_file, Path(run_path), timeout)
            for m in plain:
                results[m.name] = out[_TREC_NAMES[m.kind].format(k=m.cutoff)]
        for m in parsed:
            if m.kind == "rr":
                out = _trec_eval(["-M", str(m.cutoff), "-m", "recip_rank"], qrels_file, Path(run_path), timeout)
                results[m.name] = out["recip_rank"]
    return {m.name: results[m.name] for m in parsed}


# ---- QA answer accuracy (DPR) ----------------------------------------------------------------------

def _dpr_has_answer(text: str, answers: Sequence[str]) -> bool:
    return bool(_has_answer(answers, text))


def _passage(corpus: Corpus, docid: str, qid: str) -> int:
    """A ranked passage's position; refused when the corpus lacks it (its text is where answers are looked for)."""
    try:
        return corpus.position(docid)
    except (KeyError, ValueError):
        raise ValueError(f"the run ranks document {docid!r} for question {qid!r}, but the corpus "
                         f"({len(corpus.texts)} passages) has no such passage: was the run made on another "
                         "corpus?") from None


def qa_accuracy(run: Ranking, answers: Mapping[str, Sequence[str]], corpus: Corpus,
                ks: Sequence[int] = DEFAULT_QA_KS, *, has_answer: Callable[[str, Sequence[str]], bool] | None = None
                ) -> dict[str, float]:
    """Top-k accuracy: the share of questions whose top k passages (run order) hold an answer string.

    As in DPR and Pyserini, the passage text without its title is checked. Every question in `answers` counts; one
    missing from the run is a miss.

    Args:
        run: {question id: [(docid, score), ...]}.
        answers: {question id: answer strings}.
        corpus: the passages (`position(docid)` and `texts` are read).
        ks: the depths k.
        has_answer: (text, answers) -> bool; default DPR's rule (`mining.answers.has_answer`).

    Returns:
        {"Top{k}": accuracy} for each k, ascending.
    """
    if not answers:
        raise ValueError("no questions with answers to evaluate")
    check = has_answer or _dpr_has_answer
    ks = sorted(ks)
    hits = dict.fromkeys(ks, 0)
    for qid, answer_list in answers.items():
        ranked = run.get(qid, [])[: ks[-1]]
        texts = (corpus.texts[_passage(corpus, docid, qid)] for docid, _ in ranked)
        first_hit = next((rank for rank, text in enumerate(texts) if check(text, answer_list)), None)
        for k in ks:
            if first_hit is not None and first_hit < k:
                hits[k] += 1
    return {f"Top{k}": hits[k] / len(answers) for k in ks}


def write_dpr_retrieval(path: PathLike, run: Ranking, questions: Mapping[str, str],
                        answers: Mapping[str, Sequence[str]], corpus: Corpus, depth: int = max(DEFAULT_QA_KS)) -> None:
    """Write the retrieval json that `python -m pyserini.eval.evaluate_dpr_retrieval --retrieval PATH` reads.

    Args:
        path: the file to write.
        run, answers, corpus: as for `qa_accuracy`.
        questions: {question id: text}.
        depth: passages per question.
    """
    out = {}
    for qid in answers:
        contexts = []
        for docid, score in run.get(qid, [])[:depth]:
            i = corpus.position(docid)
            # Pyserini reads "title\ntext" and checks the part after the first newline.
            title, text = (corpus.titles[i] or "").replace("\n", " "), corpus.texts[i].replace("\n", " ")
            contexts.append({"docid": docid, "score": float(score), "text": f"{title}\n{text}"})
        out[qid] = {"question": questions.get(qid, ""), "answers": list(answers[qid]), "contexts": contexts}
    write_json(path, out)


# ---- A whole collection ----------------------------------------------------------------------------

def evaluate_collection(run: Ranking, collection: Collection | PathLike, measures: Sequence[str] = DEFAULT_MEASURES,
                        qa_ks: Sequence[int] = DEFAULT_QA_KS) -> dict:
    """All measures for a collection: qrels measures when it has judgements, top-k accuracy when it has answers.

    Args:
        run: {query id: [(docid, score), ...]}.
        collection: a loaded `Collection`, or a path to one (read with its test split).
        measures, qa_ks: the qrels measures; the depths of top-k accuracy.

    Returns:
        {"collection", "num_queries", "num_judged_queries", "num_ranked_queries", then each measure's mean}.
    """
    if isinstance(collection, (str, os.PathLike)):
        collection = load_collection(collection, split="test" if collection_splits(collection) is not None else None)
    result: dict = {"collection": collection.name, "num_queries": len(collection.queries)}
    judged = relevant_qrels(collection.qrels or {})
    result["num_judged_queries"] = len(judged)
    result["num_ranked_queries"] = sum(1 for q in judged if run.get(q))
    if judged:
        result.update(evaluate_run(run, judged, measures))
    if collection.answers:
        result.update(qa_accuracy(run, collection.answers, collection.corpus, qa_ks))
    if not judged and not collection.answers:
        raise ValueError(f"collection {collection.name!r} has neither relevance judgements nor answers")
    return result

