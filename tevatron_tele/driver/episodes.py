"""Run ANCE-Tele (or ANCE, or BM25-negative) episodes end to end.

    python -m tevatron_tele.driver.episodes --output_dir runs/scifact-tele \\
        --model_name_or_path MODEL --collection ../shared/data/scifact --negatives tele \\
        --num_episodes 3 --refresh_steps 40 --num_train_epochs 1

Settings may also come from a YAML or JSON file (`--config file.yaml`); flags given after it win. Rerunning the same
command resumes a killed run; a different config in an existing folder is refused.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..arguments import TeleArgumentParser
from ..data.run_folder import RunLayout
from ..runner.config import EpisodeArguments, load_config_file
from ..runner.episodes import run_episodes
from ..utils import read_json


def config_file_as_flags(path: str) -> list[str]:
    """A config file's settings as command-line flags, so flags given after them take precedence."""
    flags: list[str] = []
    for key, value in load_config_file(path).items():
        if isinstance(value, list):
            flags += [f"--{key}", *map(str, value)] if value else []
        elif isinstance(value, bool):
            flags += [f"--{key}", "true" if value else "false"]
        elif value is not None:
            flags += [f"--{key}", str(value)]
    return flags


def parse_args(argv: list[str] | None = None) -> EpisodeArguments:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise SystemExit("--config needs a file path")
        argv = config_file_as_flags(argv[at + 1]) + argv[:at] + argv[at + 2:]
    parser = TeleArgumentParser(EpisodeArguments, description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML or JSON file of settings (flag names without dashes)")
    return parser.parse_args_into_dataclasses(args=argv)[0]


def run(args: EpisodeArguments) -> Path:
    """Run (or resume) the episodes and print the verdict.

    Args:
        args: the run's settings.

    Returns:
        The run folder.
    """
    run_dir = run_episodes(args)
    best = RunLayout(run_dir).best_json
    if best.exists():
        print(f"verdict: {read_json(best)['text']}")
    print(f"run finished: {run_dir}")
    return run_dir


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
