"""Evaluate a TREC run: MRR@10, nDCG@10, Recall@k from qrels (ir-measures, optionally checked against
Pyserini's trec_eval), and top-k answer accuracy for QA collections.

    python -m tevatron_tele.driver.evaluate --run run.trec --qrels qrels/test.tsv
    python -m tevatron_tele.driver.evaluate --run run.trec --collection data/scifact --split test --trec_eval
    python -m tevatron_tele.driver.evaluate --collection data/scifact --split test --write_qrels scifact-test.qrels

`--write_qrels FILE` exports the qrels as TREC qrels (`qid 0 docid grade`; the queries with a relevant judgement), the
file `python -m pyserini.eval.trec_eval -c -m ndcg_cut.10 FILE RUN` reads (it cannot read a BEIR qrels tsv); without
--run it only exports.
"""
from __future__ import annotations

import logging
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..arguments import FieldGroup, TeleArgumentParser
from ..data.collections import load_collection
from ..data.outputs import StepOutput
from ..data.trec import read_run
from ..evaluation.metrics import (
    DEFAULT_MEASURES,
    DEFAULT_QA_KS,
    evaluate_collection,
    evaluate_run,
    evaluate_with_trec_eval,
    read_qrels,
    relevant_qrels,
    write_trec_qrels,
)
from ..utils import read_json, setup_logging, write_json

logger = logging.getLogger(__name__)


@dataclass
class EvaluateArguments(FieldGroup):
    run: str | None = field(default=None, metadata={"help": "TREC run file (qid Q0 docid rank score tag)"})
    qrels: str | None = field(default=None, metadata={"help": "qrels file (TREC 4-column or BEIR tsv)"})
    collection: str | None = field(default=None, metadata={"help": "collection folder/file instead of --qrels"})
    split: str = field(default="test", metadata={"help": "split of --collection to evaluate on"})
    passages: str | None = field(default=None, metadata={"help": "DPR passages tsv, for a DPR json collection"})
    measures: str = field(default=",".join(DEFAULT_MEASURES), metadata={"help": "comma-separated measures"})
    qa_ks: str = field(default=",".join(map(str, DEFAULT_QA_KS)), metadata={"help": "top-k accuracy depths (QA)"})
    trec_eval: bool = field(default=False, metadata={"help": "also compute with Pyserini's trec_eval (Java)"})
    output: str | None = field(default=None, metadata={"help": "JSON output (default: RUN with .eval.json)"})
    write_qrels: str | None = field(default=None, metadata={
        "help": "also write the qrels of --collection/--split (or --qrels) to this file as TREC qrels "
                "(qid 0 docid grade), the format Pyserini's trec_eval reads; without --run, only that"})
    overwrite: bool = field(default=False, metadata={"help": "replace an earlier output of this step made from "
                                                             "other settings or inputs (never anything else)"})


def _judgements(args: EvaluateArguments, collection) -> dict:
    """The input holding the judgements: the collection's files read, or the --qrels file."""
    if collection is None:
        return {"qrels": args.qrels}
    return {"collection": collection.source_paths() or args.collection}


def _outputs(args: EvaluateArguments, collection, output: Path | None) -> tuple[StepOutput | None, StepOutput | None]:
    """The contracts of the exported qrels and of the results JSON (None where not asked for)."""
    split = args.split if collection is not None else None
    qrels_out = results_out = None
    if args.write_qrels:
        qrels_out = StepOutput("evaluate.write_qrels", [Path(args.write_qrels)], settings={"split": split},
                               inputs=_judgements(args, collection))
    if output is not None:
        settings = {"measures": args.measures, "split": split, "trec_eval": args.trec_eval,
                    "qa_ks": args.qa_ks if collection is not None else None}
        results_out = StepOutput("evaluate", [output], settings=settings,
                                 inputs={"run": args.run, **_judgements(args, collection)})
    return qrels_out, results_out


def _table(results: dict, check: dict | None) -> str:
    rows = [(k, v) for k, v in results.items() if isinstance(v, float)]
    width = max((len(k) for k, _ in rows), default=8)
    head = f"{'measure':<{width}}  {'value':>8}" + ("  trec_eval" if check else "")
    lines = [head, "-" * len(head)]
    for k, v in rows:
        extra = f"  {check[k]:>9.4f}" if check and k in check else ""
        lines.append(f"{k:<{width}}  {v:>8.4f}{extra}")
    return "\n".join(lines)


def _evaluate(args: EvaluateArguments, run: dict, collection, qrels: dict) -> tuple[dict, dict | None]:
    """The results of `run` (and trec_eval's values when --trec_eval): (results, trec_eval's or None)."""
    measures = [m.strip() for m in args.measures.split(",") if m.strip()]
    logger.info("evaluating %s (%d queries)", args.run, len(run))
    with tempfile.TemporaryDirectory(prefix="tele-eval-") as tmp:
        if args.qrels:
            qrels_path = Path(args.qrels)
            results = {"run": args.run, "qrels": args.qrels, **evaluate_run(run, qrels, measures)}
        else:
            ks = [int(k) for k in args.qa_ks.split(",") if k.strip()]
            results = {"run": args.run, "split": args.split, **evaluate_collection(run, collection, measures, ks)}
            qrels_path = Path(args.write_qrels) if args.write_qrels else Path(tmp) / "qrels.txt"
            if not args.write_qrels and args.trec_eval:
                write_trec_qrels(qrels_path, qrels)
        check = None
        if args.trec_eval:
            check = evaluate_with_trec_eval(args.run, qrels_path, measures)
            diff = max(abs(check[m] - results[m]) for m in measures)
            results["trec_eval"] = check
            results["trec_eval_max_abs_diff"] = diff
            if diff > 1e-4:  # trec_eval prints 4 decimals
                logger.warning("ir-measures and trec_eval differ by %.6f", diff)
    return results, check


def run(args: EvaluateArguments) -> dict:
    """Evaluate a run (and/or write the qrels as TREC qrels), reusing an output this step already made.

    Args:
        args: the parsed flags.

    Returns:
        The figures written to the output JSON (or, with --write_qrels alone, the qrels file and its query count).
    """
    if (args.qrels is None) == (args.collection is None):
        raise SystemExit("give exactly one of --qrels or --collection")
    if args.run is None and args.write_qrels is None:
        raise SystemExit("give --run (a TREC run to evaluate), --write_qrels FILE, or both")
    run = read_run(args.run) if args.run is not None else None  # the run first: it fails faster than a collection
    collection = None
    if args.collection:
        collection = load_collection(args.collection, split=args.split, passages=args.passages)
    qrels = collection.qrels if collection is not None else read_qrels(args.qrels)
    output = None if args.run is None else Path(args.output or Path(args.run).with_suffix(".eval.json"))
    qrels_out, results_out = _outputs(args, collection, output)  # both checked before either is written
    reuse_qrels = qrels_out is not None and qrels_out.reusable(overwrite=args.overwrite)
    reuse_results = results_out is not None and results_out.reusable(overwrite=args.overwrite)
    if args.write_qrels:
        written = relevant_qrels(qrels)
        if not reuse_qrels:
            qrels_out.begin()
            write_trec_qrels(args.write_qrels, written)
            qrels_out.commit(counts={"queries": len(written), "judgements": sum(map(len, written.values()))})
        print(f"{'kept' if reuse_qrels else 'wrote'} {args.write_qrels}: TREC qrels of {len(written)} queries, "
              f"{sum(map(len, written.values()))} judgements (for Pyserini's trec_eval)")
        if args.run is None:
            return {"qrels": args.write_qrels, "num_queries": len(written)}
    if reuse_results:
        results = read_json(output)
        print(_table(results, results.get("trec_eval")))
        return results
    results, check = _evaluate(args, run, collection, qrels)
    print(_table(results, check))
    results_out.begin()
    write_json(output, results)
    results_out.commit(counts={"queries": results.get("num_queries", len(run))})
    logger.info("wrote %s", output)
    return results


def main(argv: list[str] | None = None) -> dict:
    setup_logging()
    (args,) = TeleArgumentParser(EvaluateArguments, description=__doc__.split("\n\n")[0]).parse_args_into_dataclasses(
        args=sys.argv[1:] if argv is None else argv)
    return run(args)


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
