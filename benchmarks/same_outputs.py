"""Fingerprints of what a refactoring must not change: the demo's and a reduced SciFact comparison's pools,
rankings, eval.json, best.json and analysis.json, with the output folder's path taken out.

    python benchmarks/same_outputs.py --out /tmp/before          # on the commit before
    python benchmarks/same_outputs.py --out /tmp/after --compare /tmp/before/same_outputs.json

Writes OUT/same_outputs.json ({file: sha256}); with --compare, lists every file whose fingerprint differs (or
that one side lacks) and exits 1 if any does.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from tevatron_tele.driver import demo

# the files a run's results are made of (paths relative to a run folder or the demo's report folder)
PATTERNS = ("run-*/episode-*/pool.jsonl", "run-*/episode-*/*.trec", "run-*/episode-*/eval.json",
            "run-*/best.json", "report/analysis.json")
SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def fingerprints(root: Path) -> dict[str, str]:
    """sha256 of every result file under `root`, with `root`'s absolute path replaced by a placeholder.

    Args:
        root: a demo output folder.

    Returns:
        {relative path: hex digest}.
    """
    out = {}
    for pattern in PATTERNS:
        for path in sorted(root.glob(pattern)):
            data = path.read_bytes().replace(str(root.resolve()).encode(), b"<OUT>")
            data = data.replace(str(root).encode(), b"<OUT>")
            out[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--compare", default=None, help="an earlier same_outputs.json to compare with")
    parser.add_argument("--scifact", default=str(SCIFACT))
    args = parser.parse_args()
    out = Path(args.out)
    demo.main(["--output_dir", str(out / "demo")])
    demo.main(["--output_dir", str(out / "scifact"), "--collection", args.scifact, "--num_episodes", "2",
               "--refresh_steps", "10", "--num_train_epochs", "0.05", "--depth", "30", "--sample", "5"])
    result = {f"{name}/{k}": v for name in ("demo", "scifact") for k, v in fingerprints(out / name).items()}
    (out / "same_outputs.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"{len(result)} files fingerprinted into {out / 'same_outputs.json'}")
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        differ = sorted(k for k in set(before) | set(result) if before.get(k) != result.get(k))
        for key in differ:
            why = "missing after" if key not in result else "missing before" if key not in before else "content"
            print(f"differs: {key} ({why})")
        print(f"{len(result) - len(differ)} of {len(set(before) | set(result))} files identical")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
