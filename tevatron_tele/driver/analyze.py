"""Compare episode runs: forgetting rates (own pools and a shared probe), ANN-negative overlap, pool
composition and retrieval quality per episode, as report.md, analysis.json and PNG plots.

    python -m tevatron_tele.driver.analyze runs/ance runs/tele --out reports/scifact

The probe (the base model's top-k negatives of the training queries, from the first run's episode-0 ranking) is saved as
OUT/probe.json; pass it with --probe to analyse later runs on the same probe.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from ..arguments import FieldGroup, TeleArgumentParser
from ..evaluation.analysis import open_run, probe_from_run
from ..evaluation.report import analyze_and_report
from ..utils import input_error, read_json, setup_logging, write_json

logger = logging.getLogger(__name__)


@dataclass
class AnalyzeArguments(FieldGroup):
    out: str = field(metadata={"help": "output folder for report.md, analysis.json, probe.json and plots"})
    probe: str | None = field(default=None, metadata={"help": "probe.json ({qid: [docid, ...]}) to reuse"})
    probe_k: int = field(default=20, metadata={"help": "probe: top k of the base model's ranking"})
    overlap_k: int = field(default=100, metadata={"help": "depth of the ANN negatives compared across episodes"})
    max_queries: int | None = field(default=2000, metadata={"help": "training queries analysed (hash sample)"})
    main_metric: str | None = field(default=None, metadata={"help": "metric of the summary (default nDCG@10)"})
    device: str = field(default="cpu")
    batch_size: int = field(default=64)
    cache_dir: str | None = field(default=None, metadata={"help": "keep token caches here (default: temporary)"})


def parse_args(argv: list[str] | None = None) -> tuple[AnalyzeArguments, list[str]]:
    parser = TeleArgumentParser(AnalyzeArguments, description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders (each with manifest.json and episode-<i>/)")
    args, extra = parser.parse_args_into_dataclasses(args=sys.argv[1:] if argv is None else argv)
    return args, list(extra.runs)


def read_probe(path: str) -> dict[str, list[str]]:
    """A probe file, {query id: [document id, ...]}; anything else raises a one-line InputFileError.

    Args:
        path: the probe.json.

    Returns:
        The probe, ids as strings.
    """
    data = read_json(path)
    if not isinstance(data, dict):
        raise input_error(path, 1, "<json>", f"expected an object of query id -> document ids, "
                                             f"got {type(data).__name__}")
    for q, ds in data.items():
        if not isinstance(ds, list) or not all(isinstance(d, (str, int)) for d in ds):
            raise input_error(path, None, q, "expected a list of document ids")
    return {str(q): [str(d) for d in ds] for q, ds in data.items()}


def run(args: AnalyzeArguments, runs: list[str]) -> dict:
    """Analyse the runs on one probe and write the report (verdict first), printing report.md.

    Args:
        args: the parsed flags.
        runs: the run folders.

    Returns:
        The analysis (what analysis.json holds).
    """
    if args.probe:
        probe = read_probe(args.probe)
        logger.info("probe from %s: %d queries", args.probe, len(probe))
    else:
        probe = probe_from_run(open_run(runs[0]), args.probe_k, args.max_queries)
        logger.info("probe from %s's base-model ranking: %d queries", runs[0], len(probe))
    write_json(f"{args.out}/probe.json", probe)
    analysis, paths = analyze_and_report(runs, args.out, main_metric=args.main_metric, probe=probe,
                                         probe_k=args.probe_k, max_queries=args.max_queries, probe_source=args.probe,
                                         overlap_k=args.overlap_k, cache_dir=args.cache_dir, device=args.device,
                                         batch_size=args.batch_size)
    print(paths["markdown"].read_text(encoding="utf-8"))
    return analysis


def main(argv: list[str] | None = None) -> dict:
    setup_logging()
    return run(*parse_args(argv))


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
