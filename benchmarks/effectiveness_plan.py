"""The effectiveness study's plan: its profiles, the runs of each part, and the sharing of a first episode.

- PROFILES and COMMON: the settings of every run of a profile (EpisodeArguments fields and a few of the study's
  own); PARTS, METRICS and the two collections' names (MAIN, TRANSFER);
- experiments(): every run of the study, in the order they are run (beyond_experiments(): the `beyond` part),
  chain_steps(): the optimizer steps of a whole quick-refresh chain, episode_arguments(): one run's settings;
- can_share() and share_first_episode(): whether another run's episode-1 pool (or whole episode) is the one a
  run would compute, and linking it in when it is;
- resolve_paths(): where a profile's runs, caches and inputs are under the results folder.

Imported by benchmarks/effectiveness.py (the driver) and effectiveness_summary.py; imports neither.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
from pathlib import Path

from tevatron_tele.data.pools import pool_stats_path
from tevatron_tele.data.run_folder import RunLayout
from tevatron_tele.utils import read_json, write_json

logger = logging.getLogger("effectiveness")

PARTS = ("headline", "baselines", "ablations", "refresh", "variables", "beyond")
METRICS = ("nDCG@10", "MRR@10", "R@100")
MAIN, TRANSFER = "scifact", "msmarco-dl19-subset"

# Settings shared by every run of a profile (EpisodeArguments fields), plus a few of this script's own:
# refresh_alt (the longer refresh of the `refresh` part), lr_alt and sample_alt (the `variables` part) and seeds.
COMMON = dict(pooling="mean", normalize=True, temperature=0.05, learning_rate=2e-5, per_device_train_batch_size=8,
              warmup_ratio=0.1, depth=200, sample=30, eval_depth=1000, num_episodes=3, logging_steps=10,
              lr_alt=5e-5, sample_alt=10, margin_alt=0.1,
              # the paper's mining, which these figures were measured with (the runner now filters by default)
              max_negative_ratio=None, filter_positive="weakest", train_positives="all")
PROFILES: dict[str, dict] = {
    # 40/40/~200 steps (2 epochs of 809 queries at 8 per batch), 8 x (1 + 3) passages of 128 tokens.
    "cpu": dict(q_max_len=64, p_max_len=128, train_n_passages=4, refresh_steps=40, num_train_epochs=2.0,
                refresh_alt=100, analysis_max_queries=200, encode_batch_size=128, seeds=[1, 2, 3],
                transfer="final"),
    # One seed, 10/10/~41 steps, 64-token passages: the whole study in well under an hour on 2 cores.
    "quick": dict(q_max_len=32, p_max_len=64, train_n_passages=4, refresh_steps=10, num_train_epochs=0.4,
                  refresh_alt=25, analysis_max_queries=100, encode_batch_size=128, seeds=[1], transfer="final"),
    # 100/100/~303 steps, 8 x (1 + 7) passages of 256 tokens, bf16 training and encoding, torch search.
    "gpu": dict(q_max_len=64, p_max_len=256, train_n_passages=8, refresh_steps=100, num_train_epochs=3.0,
                refresh_alt=200, analysis_max_queries=None, encode_batch_size=512, seeds=[1, 2, 3],
                transfer="per_episode", bf16=True, encode_amp="bf16", search_backend="torch", device="cuda"),
    # The GPU profile's code path on a small subset and on the CPU, in a few minutes (bf16 is left out:
    # on a CPU without bf16 units it is many times slower).
    "dry": dict(q_max_len=16, p_max_len=32, train_n_passages=4, refresh_steps=2, num_train_epochs=0.2,
                refresh_alt=3, analysis_max_queries=20, encode_batch_size=64, seeds=[1],
                depth=50, sample=5, eval_depth=100, search_backend="torch", device="cpu", transfer="per_episode"),
}
# margin_alt: the `beyond` part's filter, --negative_margin 0.1 (cosine): on the DL19 slice's deep judgments
# it removed 55-57% of the judged-relevant ANN, lookahead and BM25 candidates for 1.3-4% of the others
# (BENCHMARKS.md, "False negatives").
# refresh_alt: the longer refresh of the `refresh` part; transfer: evaluate the DL19 subset after every episode
# (the runner's --eval_collections) or only for each run's last model ("final": one corpus encoding per run
# instead of one per episode, which matters on 2 CPU cores).


# ---- experiments ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class Experiment:
    name: str
    part: str
    overrides: dict
    # (episode, run it is taken from, "pool" | "episode"): linked in before the run starts, when equal.
    share: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)
    label: str = ""  # what the run is, for the summary's tables


def steps_per_epoch(n_queries: int, batch_size: int) -> int:
    return math.ceil(n_queries / batch_size)


def chain_steps(profile: dict, n_queries: int) -> int:
    """Optimizer steps of a whole quick-refresh chain: every episode but the last stops at refresh_steps."""
    full = math.ceil(profile["num_train_epochs"] * steps_per_epoch(n_queries, profile["per_device_train_batch_size"]))
    refresh = min(profile["refresh_steps"], full) if profile["refresh_steps"] else full
    return refresh * (profile["num_episodes"] - 1) + full


def experiments(profile: dict, seeds: list[int], n_train_queries: int) -> list[Experiment]:
    """Every run of the study, in the order they are run (headline seed pairs first)."""
    s0 = seeds[0]
    out = [Experiment("zero-shot", "baselines", dict(negatives="tele", num_episodes=1, seed=s0))]
    for s in seeds:
        out.append(Experiment(f"tele-s{s}", "headline", dict(negatives="tele", seed=s)))
        out.append(Experiment(f"ance-s{s}", "headline", dict(negatives="ann", seed=s)))
    spe = steps_per_epoch(n_train_queries, profile["per_device_train_batch_size"])
    total = chain_steps(profile, n_train_queries)
    # the schedule's length in epochs, rounded down so that the trainer's ceil() gives exactly `total` steps
    epochs = math.floor(total / spe * 1e6) / 1e6
    out.append(Experiment(f"bm25neg-s{s0}", "baselines",
                          dict(negatives="bm25", num_episodes=1, seed=s0, refresh_steps=0, num_train_epochs=epochs)))
    out += [
        Experiment(f"tele-weighted-s{s0}", "ablations", dict(negatives="tele", negative_mixing="weighted", seed=s0),
                   [(1, f"tele-s{s0}", "pool")]),
        Experiment(f"tele-nomomentum-s{s0}", "ablations",
                   dict(negatives="tele", tele_sources="ann,lookahead", seed=s0), [(1, f"tele-s{s0}", "episode")]),
        Experiment(f"tele-nolookahead-s{s0}", "ablations",
                   dict(negatives="tele", tele_sources="ann,momentum", seed=s0), [(1, f"ance-s{s0}", "episode")]),
        Experiment(f"tele-refresh{profile['refresh_alt']}-s{s0}", "refresh",
                   dict(negatives="tele", refresh_steps=profile["refresh_alt"], seed=s0), [(1, f"tele-s{s0}", "pool")]),
        Experiment(f"ance-refresh{profile['refresh_alt']}-s{s0}", "refresh",
                   dict(negatives="ann", refresh_steps=profile["refresh_alt"], seed=s0), [(1, f"ance-s{s0}", "pool")]),
    ]
    lr, sample = profile["lr_alt"], profile["sample_alt"]
    for recipe, negatives in (("tele", "tele"), ("ance", "ann")):
        # the learning rate does not change episode 1's pool; fewer negatives per source does
        out.append(Experiment(f"{recipe}-lr{lr:g}-s{s0}", "variables",
                              dict(negatives=negatives, learning_rate=lr, seed=s0), [(1, f"{recipe}-s{s0}", "pool")]))
    for recipe, negatives in (("tele", "tele"), ("ance", "ann")):
        out.append(Experiment(f"{recipe}-sample{sample}-s{s0}", "variables",
                              dict(negatives=negatives, sample=sample, seed=s0)))
    return out + beyond_experiments(profile, s0)


def beyond_experiments(profile: dict, seed: int) -> list[Experiment]:
    """The `beyond` part: variants past the paper, each compared with plain `tele-s<seed>` and `ance-s<seed>`."""
    margin = profile["margin_alt"]
    out = [Experiment(f"{recipe}-margin{margin:g}-s{seed}", "beyond",
                      dict(negatives=negatives, negative_margin=margin, seed=seed),
                      label=f"{name}, positive-aware filter (margin {margin:g})")
           for recipe, negatives, name in (("tele", "tele", "Tele"), ("ance", "ann", "ANCE"))]
    # momentum is empty in episode 1, so forgotten-first replay starts from Tele's episode 1 as it is
    out.append(Experiment(f"tele-forgotten-s{seed}", "beyond",
                          dict(negatives="tele", momentum="forgotten-first", seed=seed),
                          [(1, f"tele-s{seed}", "episode")], label="Tele, forgotten-first momentum"))
    out.append(Experiment(f"telebm25-s{seed}", "beyond", dict(negatives="tele+bm25", seed=seed),
                          label="Tele + BM25 negatives"))
    return out


def episode_arguments(exp: Experiment, profile: dict, paths: dict):
    from tevatron_tele.runner.config import EpisodeArguments

    fields = {f.name for f in dataclasses.fields(EpisodeArguments)}
    settings = {k: v for k, v in profile.items() if k in fields}
    settings.update(exp.overrides)
    per_episode = profile.get("transfer", "per_episode") == "per_episode"
    return EpisodeArguments(
        output_dir=str(paths["runs"] / exp.name), model_name_or_path=str(paths["model"]),
        collection=str(paths["collection"]), eval_collections=[str(paths["transfer"])] if per_episode else [],
        token_cache_dir=str(paths["token_cache"]), base_cache_dir=str(paths["base_cache"]),
        progress=False, **settings)


# ---- sharing a first episode between runs ---------------------------------------------------------------

# What decides episode 1's pool, and on top of it episode 1's model (every episode starts from the base model).
_POOL_KEYS = ("model_name_or_path", "collection", "passages", "train_split", "depth", "sample", "seed",
              "lookahead_all_positives", "q_max_len", "p_max_len", "pooling", "normalize", "embedding_dtype",
              "max_negative_ratio", "negative_margin", "skip_top", "filter_positive", "train_positives")
_TRAIN_KEYS = ("refresh_steps", "num_train_epochs", "learning_rate", "warmup_ratio", "train_n_passages",
               "per_device_train_batch_size", "temperature", "untie_encoder", "negative_mixing", "source_weights",
               "mask_batch_positives", "bf16", "fp16", "continue_training")


def first_episode_sources(config: dict) -> set[str]:
    """The negative sources of episode 1 (momentum has no earlier pool yet)."""
    from tevatron_tele.runner.config import EpisodeArguments

    fields = {f.name for f in dataclasses.fields(EpisodeArguments)}
    settings = {k: v for k, v in config.items() if k in fields}
    settings["output_dir"] = "-"  # not part of a result config
    return EpisodeArguments(**settings).sources() - {"momentum"}


def can_share(src_config: dict, dst_config: dict, what: str) -> list[str]:
    """Why episode 1 of `src` is not episode 1 of `dst` (empty when it is)."""
    keys = _POOL_KEYS + (_TRAIN_KEYS if what == "episode" else ())
    why = [f"{k}: {src_config.get(k)!r} != {dst_config.get(k)!r}" for k in keys
           if src_config.get(k) != dst_config.get(k)]
    if first_episode_sources(src_config) != first_episode_sources(dst_config):
        why.append("episode-1 negative sources differ")
    if what == "episode" and dst_config.get("num_episodes") == 1 != src_config.get("num_episodes"):
        why.append("episode 1 is the last episode in one run only")
    return why


def _link_tree(src: Path, dst: Path) -> None:
    """Copy a finished episode folder with hard links (it is never written again), without embeddings."""
    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link, ignore=shutil.ignore_patterns("embeddings", "model.partial"))


def share_first_episode(exp: Experiment, args, runs_dir: Path) -> list[dict]:
    """Link another run's episode-1 pool (or whole episode) into this run when it would compute the same."""
    done = []
    dst_root = RunLayout(args.output_dir)
    for episode, source, what in exp.share:
        src_root = RunLayout(runs_dir / source)
        src_ep, dst_ep = src_root.episode(episode), dst_root.episode(episode)
        if not src_root.done(episode).exists() or dst_ep.exists():
            continue
        why = can_share(read_json(src_root.manifest_path)["config"], args.result_config(), what)
        if why:
            logger.info("%s: not sharing episode %d with %s (%s)", exp.name, episode, source, "; ".join(why))
            continue
        dst_root.root.mkdir(parents=True, exist_ok=True)
        if what == "episode":
            _link_tree(src_ep, dst_ep)
        else:
            dst_ep.mkdir(parents=True)
            for pool in (src_root.pool(episode), pool_stats_path(src_root.pool(episode))):
                shutil.copy2(pool, dst_ep / pool.name)
        done.append({"episode": episode, "from": source, "what": what})
        logger.info("%s: episode %d's %s taken from %s", exp.name, episode, what, source)
    if done:
        record = dst_root.root / "shared.json"
        earlier = read_json(record) if record.exists() else []
        write_json(record, earlier + done)
    return done


# ---- the study's folders -------------------------------------------------------------------------------

def resolve_paths(results: Path, profile: str, data: Path | None, model: Path | None) -> dict:
    root = results / profile
    paths = {"results": results, "root": root, "runs": root / "runs", "base_cache": root / "base_cache",
             "token_cache": results / "token_cache"}
    if data is not None:
        paths["collection"], paths["transfer"] = data / MAIN, data / TRANSFER
    else:  # summary only: read back what the runs were made with
        stored = root / "study.json"
        if stored.exists():
            info = read_json(stored)
            paths["collection"], paths["transfer"] = Path(info["collection"]), Path(info["transfer"])
    if model is not None:
        paths["model"] = model
    return paths

