"""ANCE against ANCE-Tele, three episodes each, in one command.

With no arguments it runs on the embedded synthetic collection with a tiny random BERT (no downloads, a few minutes on
two CPU cores), prints retrieval quality and forgetting by episode, and writes the report (markdown, JSON, PNG plots)
under --output_dir/report. Every run shares --seed (a paired comparison); the defaults suit the tiny model (a pretrained
--model wants e.g. --learning_rate 2e-5). `--collection DIR --model DIR` runs it on real data.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

from ..arguments import LengthFields, MiningFields, TeleArgumentParser, TeleModelFields, option
from ..data.names import Pooling, check_choice
from ..data.run_folder import RunLayout
from ..data.synthetic import build_tiny_model, make_synthetic_collection
from ..evaluation.metrics import DEFAULT_METRIC
from ..evaluation.report import analyze_and_report, format_value, run_series
from ..runner.config import EpisodeArguments, NegativeRecipe, ScheduleFields
from ..runner.episodes import run_episodes
from ..utils import setup_logging

logger = logging.getLogger(__name__)


@dataclass
class DemoArguments(LengthFields, TeleModelFields, MiningFields, ScheduleFields):
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where the runs and the report go."})
    collection: str | None = field(default=None, metadata={"help": "A collection folder; default: the synthetic "
                                                                   "collection, generated under --output_dir."})
    model: str | None = field(default=None, metadata={"help": "Base model folder; default: a tiny random BERT."})
    recipes: str = field(default="ann,tele", metadata={"help": "Negative recipes to compare, comma-separated "
                                                               "(tele, ann, bm25, ann+bm25)."})
    device: str = option(EpisodeArguments, "device")
    progress: bool = option(EpisodeArguments, "progress", False)  # off keeps the demo's output short
    # the episode settings' own defaults, for a tiny model trained briefly on a small collection
    refresh_steps: int = option(ScheduleFields, "refresh_steps", 30)
    num_train_epochs: float = option(ScheduleFields, "num_train_epochs", 5.0)
    learning_rate: float = option(ScheduleFields, "learning_rate", 1e-3)
    train_n_passages: int = option(LengthFields, "train_n_passages", 4)
    q_max_len: int = option(LengthFields, "q_max_len", 16)
    p_max_len: int = option(LengthFields, "p_max_len", 48)
    depth: int = option(MiningFields, "depth", 50)
    sample: int = option(MiningFields, "sample", 10)
    pooling: Pooling = option(TeleModelFields, "pooling", "mean")
    normalize: bool = option(TeleModelFields, "normalize", True)
    temperature: float = option(TeleModelFields, "temperature", 0.05)

    def __post_init__(self):
        for recipe in self.recipe_list:
            check_choice("recipes", recipe, get_args(NegativeRecipe))
        super().__post_init__()

    @property
    def recipe_list(self) -> list[str]:
        return [r.strip() for r in self.recipes.split(",") if r.strip()]


def _prepare_inputs(args: DemoArguments) -> tuple[Path, Path]:
    """(collection, base model): the given ones, or the synthetic collection and a tiny BERT."""
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


def _episode_arguments(args: DemoArguments, recipe: str, collection: Path, model: Path) -> EpisodeArguments:
    """One recipe's run, under --output_dir/run-<recipe>, with the demo's settings."""
    root = Path(args.output_dir)
    shared = {f.name: getattr(args, f.name) for f in dataclasses.fields(DemoArguments)
              if f.name in {g.name for g in dataclasses.fields(EpisodeArguments)}
              and f.name not in ("output_dir", "collection", "model")}
    # the tiny random BERT ranks its positives below most candidates: the runner's default filter would leave it
    # little to train on, so it mines as the paper does; a given --model gets the runner's defaults
    mining = {} if args.model else {"max_negative_ratio": None, "train_positives": "all"}
    return EpisodeArguments(output_dir=str(root / f"run-{recipe}"), model_name_or_path=str(model),
                            collection=str(collection), negatives=recipe, eval_depth=100, analyze=False,
                            token_cache_dir=str(RunLayout(root).token_cache_dir), base_cache_dir=str(root / "base"),
                            **mining, **shared)


def _format_table(analysis: dict, metric: str = DEFAULT_METRIC) -> str:
    """Metric and forgetting rates per episode and run, as a fixed-width table."""
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
    started = time.perf_counter()
    collection, model = _prepare_inputs(args)
    run_dirs = []
    for recipe in args.recipe_list:
        print(f"[demo] {recipe}: {args.num_episodes} episodes on {collection.name} ...", flush=True)
        run_dirs.append(run_episodes(_episode_arguments(args, recipe, collection, model)))
    print("[demo] analysing forgetting ...", flush=True)
    demo_folder = RunLayout(args.output_dir)  # the runs' folder: a report and a token cache as a run folder's
    out = demo_folder.report_dir
    analysis, files = analyze_and_report(run_dirs, out, cache_dir=demo_folder.token_cache_dir,
                                         progress=args.progress)
    print()
    print(_format_table(analysis))
    print()
    print("forgetting: share of negatives learned in an earlier episode that the model again ranks above the "
          "positive;\n  own = each run's own pools, probe = the base model's top negatives, shared by all runs.")
    print(f"report: {out}/report.md; plots: {', '.join(sorted(p.name for p in files.values() if p.suffix == '.png'))}")
    print(f"[demo] done in {time.perf_counter() - started:.0f} s")
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = TeleArgumentParser(DemoArguments, description=__doc__.split("\n\n")[0])
    args = parser.parse_args_into_dataclasses(args=argv)[0]
    setup_logging(logging.INFO if args.progress else logging.WARNING)
    return run(args)


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
