"""ANCE against ANCE-Tele, three episodes each, in one command.

With no arguments it runs on the embedded synthetic collection with a tiny random BERT (no
downloads, a few minutes on two CPU cores), prints retrieval quality and forgetting by episode,
and writes the report (markdown, JSON, PNG plots) under --output_dir/report.
`--collection DIR --model DIR` runs the same comparison on real data.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from ..data.run_folder import RunLayout
from ..runner.config import EpisodeArguments
from ..runner.episodes import run_episodes
from ..utils import setup_logging

logger = logging.getLogger(__name__)


@dataclass
class DemoArguments:
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where the runs and the report go."})
    collection: str | None = field(default=None, metadata={"help": "A collection folder; default: the synthetic "
                                                                   "collection, generated under --output_dir."})
    model: str | None = field(default=None, metadata={"help": "Base model folder; default: a tiny random BERT."})
    recipes: str = field(default="ann,tele", metadata={"help": "Negative recipes to compare, comma-separated "
                                                               "(tele, ann, bm25, ann+bm25)."})
    num_episodes: int = field(default=3, metadata={"help": "Episodes per run."})
    refresh_steps: int = field(default=30, metadata={"help": "Steps of every episode but the last."})
    num_train_epochs: float = field(default=5.0, metadata={"help": "Epochs of the full schedule (last episode)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate (1e-3 suits the tiny model; "
                                                                 "use ~2e-5 for a pretrained one)."})
    train_n_passages: int = field(default=4, metadata={"help": "1 positive + n-1 negatives per query in a step."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Queries per batch."})
    q_max_len: int = field(default=16, metadata={"help": "Query length in tokens."})
    p_max_len: int = field(default=48, metadata={"help": "Passage length in tokens."})
    depth: int = field(default=50, metadata={"help": "Rank depth mined for negatives."})
    sample: int = field(default=10, metadata={"help": "Negatives kept per source per query."})
    pooling: str = field(default="mean", metadata={"help": "cls or mean pooling."})
    normalize: bool = field(default=True, metadata={"help": "Cosine similarity."})
    temperature: float = field(default=0.05, metadata={"help": "Softmax temperature."})
    seed: int = field(default=42, metadata={"help": "Seed shared by every run (paired comparison)."})
    device: str = field(default="auto", metadata={"help": "cpu, cuda or auto."})
    progress: bool = field(default=False, metadata={"help": "Progress bars (off keeps the demo's output short)."})


def prepare_inputs(args: DemoArguments) -> tuple[Path, Path]:
    """The collection and base model: the given ones, or the synthetic collection and a tiny BERT."""
    from ..data.synthetic import build_tiny_model, make_synthetic_collection

    root = Path(args.output_dir)
    # the synthetic queries name their key terms by synonyms: what BM25 misses and a trained model can learn
    collection = (Path(args.collection) if args.collection
                  else make_synthetic_collection(root / "synthetic", synonyms=True))
    if args.model:
        model = Path(args.model)
    else:
        model = root / "tiny-bert"
        if not (model / "config.json").exists():
            build_tiny_model(model, vocab_source=collection, seed=args.seed)
    return collection, model


def episode_arguments(args: DemoArguments, recipe: str, collection: Path, model: Path) -> EpisodeArguments:
    root = Path(args.output_dir)
    shared = {f.name: getattr(args, f.name) for f in dataclasses.fields(DemoArguments)
              if f.name in {g.name for g in dataclasses.fields(EpisodeArguments)}
              and f.name not in ("output_dir", "collection", "model")}
    return EpisodeArguments(output_dir=str(root / f"run-{recipe}"), model_name_or_path=str(model),
                            collection=str(collection), negatives=recipe, eval_depth=100, analyze=False,
                            token_cache_dir=str(RunLayout(root).token_cache_dir), base_cache_dir=str(root / "base"),
                            **shared)


def format_table(analysis: dict, metric: str = "nDCG@10") -> str:
    """Metric and forgetting rates per episode and run, as a fixed-width table."""
    from ..evaluation.report import format_value, run_series

    lines = [f"{'run':<10} {'episode':>7} {metric:>9} {'forget(own)':>12} {'forget(probe)':>14} {'pool/query':>11}"]
    for run in analysis["runs"]:
        series = run_series(run)
        name = next((k for k in series["metrics"] if k.endswith(metric)), None)
        for ep in run["episodes"]:
            value = series["metrics"].get(name, {}).get(ep) if name else None
            cells = [value, series["own_pool"].get(ep), series["probe"].get(ep), series["pool_per_query"].get(ep)]
            text = [format_value(c) for c in cells]
            lines.append(f"{run['name']:<10} {ep:>7} {text[0]:>9} {text[1]:>12} {text[2]:>14} {text[3]:>11}")
    return "\n".join(lines)


def run(args: DemoArguments) -> Path:
    """Run each recipe's episodes on the same inputs, then analyse and report them side by side.

    Args:
        args: the demo's settings.

    Returns:
        The report folder (report.md, analysis.json, plots).
    """
    import time

    from ..evaluation.report import analyze_and_report

    started = time.perf_counter()
    collection, model = prepare_inputs(args)
    run_dirs = []
    for recipe in [r.strip() for r in args.recipes.split(",") if r.strip()]:
        print(f"[demo] {recipe}: {args.num_episodes} episodes on {collection.name} ...", flush=True)
        run_dirs.append(run_episodes(episode_arguments(args, recipe, collection, model)))
    print("[demo] analysing forgetting ...", flush=True)
    demo_folder = RunLayout(args.output_dir)  # the runs' folder: a report and a token cache as a run folder's
    out = demo_folder.report_dir
    analysis, files = analyze_and_report(run_dirs, out, cache_dir=demo_folder.token_cache_dir,
                                         progress=args.progress)
    print()
    print(format_table(analysis))
    print()
    print("forgetting: share of negatives learned in an earlier episode that the model again ranks above the "
          "positive;\n  own = each run's own pools, probe = the base model's top negatives, shared by all runs.")
    print(f"report: {out}/report.md; plots: {', '.join(sorted(p.name for p in files.values() if p.suffix == '.png'))}")
    print(f"[demo] done in {time.perf_counter() - started:.0f} s")
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = HfArgumentParser(DemoArguments, description=__doc__.split("\n\n")[0])
    args = parser.parse_args_into_dataclasses(args=argv)[0]
    setup_logging(logging.INFO if args.progress else logging.WARNING)
    return run(args)


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
