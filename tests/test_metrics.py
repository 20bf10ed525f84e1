"""Retrieval measures: hand-computed values, ir-measures vs Pyserini's trec_eval, DPR answer accuracy."""
from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tevatron_tele.data.trec import write_run
from tevatron_tele.evaluation.metrics import (
    evaluate_run,
    evaluate_with_trec_eval,
    parse_measure,
    qa_accuracy,
    read_qrels,
    write_dpr_retrieval,
)

QRELS = {"q1": {"a": 2, "b": 1, "c": 0}, "q2": {"x": 1}, "q3": {"z": 3}, "q4": {"n": 0}}
RUN = {"q1": [("c", 3.0), ("b", 2.0), ("a", 1.0)], "q2": [("y", 1.0), ("x", 0.5)], "q4": [("n", 1.0)]}


def test_hand_computed_values():
    out = evaluate_run(RUN, QRELS, ("MRR@10", "MRR@1", "R@2", "nDCG@10"))
    # q4 has no relevant passage and is not scored; q3 is judged but missing from the run: it scores 0.
    assert out["MRR@10"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert out["MRR@1"] == 0.0
    assert out["R@2"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    ndcg_q1 = (1 / math.log2(3) + 2 / math.log2(4)) / (2 + 1 / math.log2(3))
    ndcg_q2 = (1 / math.log2(3)) / 1
    assert out["nDCG@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 3)
    assert list(out) == ["MRR@10", "MRR@1", "R@2", "nDCG@10"]


def test_mrr_cutoff_breaks_ties_like_trec_eval():
    # equal scores: trec_eval puts the larger docid first, so d2 holds rank 1 and the relevant d1 rank 2
    out = evaluate_run({"q": [("d1", 1.0), ("d2", 1.0)]}, {"q": {"d1": 1}}, ("MRR@1", "MRR@10"))
    assert out == {"MRR@1": 0.0, "MRR@10": 0.5}


def test_parse_measure_names():
    assert parse_measure("Recall@100").kind == "recall"
    assert parse_measure("mrr@10").cutoff == 10
    with pytest.raises(ValueError, match="P@5"):
        parse_measure("P@5")


def test_read_qrels_formats(tmp_path):
    beir = tmp_path / "test.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n")
    trec = tmp_path / "qrels.txt"
    trec.write_text("q1 0 d1 2\nq1 0 d2 0\n")
    assert read_qrels(beir) == read_qrels(trec) == {"q1": {"d1": 2, "d2": 0}}
    bad = tmp_path / "bad.tsv"
    bad.write_text("q1 0 d1 2\nq1 0 d2 high\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: field 'grade'"):
        read_qrels(bad)


def _random_case(seed=0, n_queries=12, n_docs=40):
    rng = random.Random(seed)
    qrels, run = {}, {}
    for q in range(n_queries):
        docs = [f"d{q}-{i}" for i in range(n_docs)]
        qrels[f"q{q}"] = {d: rng.choice([0, 1, 2, 3]) for d in rng.sample(docs, 5)}
        ranked = [(d, round(rng.random(), 3)) for d in docs]  # 3 decimals: ties happen
        ranked.sort(key=lambda x: -x[1])
        if q != 3:  # q3 judged, not retrieved
            run[f"q{q}"] = ranked
    return qrels, run


@pytest.mark.slow
def test_ir_measures_agrees_with_pyserini_trec_eval(tmp_path, pyserini):
    qrels, run = _random_case()
    qrels_path = tmp_path / "qrels.tsv"
    qrels_path.write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q, docs in qrels.items() for d, g in docs.items()))
    run_path = tmp_path / "run.trec"
    write_run(run_path, run)
    measures = ("MRR@10", "MRR@3", "nDCG@10", "R@5", "R@20")
    ours = evaluate_run(run, read_qrels(qrels_path), measures)
    java = evaluate_with_trec_eval(run_path, qrels_path, measures)
    assert set(ours) == set(java) == set(measures)
    for m in measures:
        assert ours[m] == pytest.approx(java[m], abs=1e-4), m  # trec_eval prints 4 decimals
    assert 0 < ours["MRR@10"] < 1 and ours["MRR@3"] <= ours["MRR@10"]


@dataclass
class _Corpus:
    ids: list
    titles: list
    texts: list

    def position(self, docid):
        return self.ids.index(docid)


CORPUS = _Corpus(
    ids=["d1", "d2", "d3", "d4"],
    titles=["Paris", "France", "", "Rome"],
    texts=["A city on a river.", "Its capital is Paris, on the Seine.", "The Eiffel tower.", "Not here."],
)
ANSWERS = {"q1": ["Paris"], "q2": ["Eiffel Tower"], "q3": ["Lyon"], "q4": ["Seine"]}
QA_RUN = {
    "q1": [("d1", 3.0), ("d2", 2.0)],  # d1's title says Paris, but titles are not checked
    "q2": [("d3", 1.0)],
    "q3": [("d1", 1.0), ("d2", 0.5)],
}  # q4 is not in the run: a miss


def test_qa_accuracy_hand_computed():
    out = qa_accuracy(QA_RUN, ANSWERS, CORPUS, ks=(1, 2))
    assert out == {"Top1": 1 / 4, "Top2": 2 / 4}


def test_qa_accuracy_matches_pyserini_dpr_evaluation(tmp_path, pyserini):
    path = tmp_path / "retrieval.json"
    write_dpr_retrieval(path, QA_RUN, {q: f"question {q}" for q in ANSWERS}, ANSWERS, CORPUS, depth=2)
    assert json.loads(path.read_text())["q1"]["contexts"][0]["text"] == "Paris\nA city on a river."
    proc = subprocess.run(
        [sys.executable, "-m", "pyserini.eval.evaluate_dpr_retrieval", "--retrieval", str(path), "--topk", "1", "2"],
        capture_output=True, text=True, check=True,
    )
    theirs = {line.split()[0]: float(line.split()[-1]) for line in proc.stdout.splitlines() if line.startswith("Top")}
    ours = qa_accuracy(QA_RUN, ANSWERS, CORPUS, ks=(1, 2))
    assert theirs == pytest.approx(ours)


def test_evaluate_collection_with_answers_and_qrels():
    from tevatron_tele.evaluation.metrics import evaluate_collection

    @dataclass
    class _Collection:
        name: str
        corpus: object
        queries: dict
        qrels: dict
        answers: dict | None = None

    coll = _Collection("qa", CORPUS, {q: q for q in ANSWERS}, {"q1": {"d2": 1}, "q4": {"d2": 1}}, ANSWERS)
    out = evaluate_collection(QA_RUN, coll, ("MRR@10",), (1, 2))
    # q1 finds d2 at rank 2, q4 is not in the run
    assert out["MRR@10"] == pytest.approx(0.25)
    assert (out["Top1"], out["Top2"]) == (0.25, 0.5)
    assert (out["num_queries"], out["num_judged_queries"], out["num_ranked_queries"]) == (4, 2, 1)


def test_evaluate_driver_writes_json(tmp_path):
    from tevatron_tele.data.trec import write_qrels
    from tevatron_tele.driver.evaluate import main

    run_path, qrels_path, out = tmp_path / "run.trec", tmp_path / "qrels.txt", tmp_path / "eval.json"
    write_run(run_path, RUN)
    write_qrels(qrels_path, QRELS)
    result = main(["--run", str(run_path), "--qrels", str(qrels_path), "--measures", "MRR@10,R@2",
                   "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved["MRR@10"] == result["MRR@10"] == pytest.approx(1 / 3)
    assert saved["R@2"] == pytest.approx(0.5)
    with pytest.raises(SystemExit):
        main(["--run", str(run_path)])
