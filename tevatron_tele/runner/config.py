"""The episode runner's settings: one dataclass, from flags (HfArgumentParser) or a YAML/JSON file.

`EpisodeArguments` composes the shared field groups (`tevatron_tele.arguments`) with the run's own: `RunFields`,
`ScheduleFields` (the demo's too), and its training, encoding and evaluation settings.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from ..arguments import (
    FieldGroup,
    FilterFields,
    LengthFields,
    MiningFields,
    MixingFields,
    TeleModelFields,
    TrainerFields,
    option,
)
from ..data.names import Amp, EmbeddingDtype, FilterPositive, SearchBackend, TrainPositives
from ..data.pools import TELE_SOURCES
from ..evaluation.metrics import DEFAULT_METRIC, parse_measure
from ..evaluation.verdict import SelectionRule
from ..utils import InputFileError, PathLike, location, read_text

NegativeRecipe = Literal["tele", "ann", "bm25", "ann+bm25", "tele+bm25"]
Baselines = Literal["auto", "bm25", "none"]

# Fields that change how a run is carried out but not what it computes; a rerun may change them.
RUNTIME_ONLY_FIELDS = frozenset({
    "output_dir", "analyze", "device", "encode_batch_size", "keep_embeddings", "progress", "logging_steps",
    "token_cache_dir", "base_cache_dir", "analysis_max_queries", "analysis_probe_k", "baselines",
})


@dataclass
class RunFields(FieldGroup):
    """The run folder, the base model, and the collection with its splits."""

    output_dir: str = field(metadata={"help": "Run folder: RUN/episode-<i>/... and RUN/manifest.json."})
    model_name_or_path: str = field(metadata={"help": "Base model every episode starts from (a local folder or a "
                                                      "hub name); it also mines episode 1's negatives."})
    collection: str = field(metadata={"help": "Training collection (BEIR dir, MS MARCO dir, DPR json, Tevatron "
                                              "jsonl); its --train_split queries are trained on and its "
                                              "--eval_split queries evaluated after every episode."})
    passages: str | None = field(default=None, metadata={"help": "Passages TSV of a DPR json collection."})
    train_split: str = field(default="train", metadata={"help": "Split whose queries are trained on."})
    eval_split: str = field(default="test", metadata={"help": "Split evaluated after every episode ('' for none)."})
    dev_split: str = field(
        default="",
        metadata={"help": "Split the kept episode is chosen on (e.g. 'dev'; MS MARCO's dev queries, a BEIR "
                          "collection's qrels/dev.tsv): RUN/best names the episode with the best dev "
                          "--selection_metric, episode 0 unless a trained one beats it. Never the test split."})
    dev_from_train: int = field(
        default=0,
        metadata={"help": "For collections without a dev split: hold out this many training queries (seeded) as "
                          "the dev split; they are never trained on."})
    eval_collections: list[str] = field(
        default_factory=list,
        metadata={"help": "More collections (BEIR-style dirs, test split) evaluated zero-shot after every episode."})


@dataclass
class ScheduleFields(FieldGroup):
    """How many episodes, and how long and fast each trains."""

    num_episodes: int = field(default=3, metadata={"help": "Number of training episodes."})
    refresh_steps: int = field(
        default=0,
        metadata={"help": "Quick refresh: episodes before the last stop after this many optimizer steps, with the "
                          "learning-rate schedule of the full run (0 = train every episode fully)."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs of a full episode (sets the schedule)."})
    learning_rate: float = field(default=5e-6, metadata={"help": "Peak learning rate."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Queries per batch (per process)."})
    seed: int = field(default=42, metadata={"help": "Seed of training and negative sampling."})

    def __post_init__(self):
        if self.num_episodes < 1:
            raise ValueError(f"--num_episodes must be >= 1, got {self.num_episodes}")
        super().__post_init__()


@dataclass
class EpisodeArguments(TrainerFields, MixingFields, LengthFields, TeleModelFields, FilterFields, MiningFields,
                       ScheduleFields, RunFields):
    """Every setting of a run of episodes. With a ratio or margin filter, or momentum replay, the mining model's scores
    come from RUN/episode-<i-1>/scores.npz or the episode's embeddings (pool i+1 is then mined before episode i's corpus
    embeddings are removed)."""

    # the runner's own defaults (the defaults study, BENCHMARKS.md): every source filtered against the best-scored
    # positive, each query trained on it; `--max_negative_ratio none --train_positives all` is the paper's recipe
    max_negative_ratio: float | None = option(FilterFields, "max_negative_ratio", 0.95)
    filter_positive: FilterPositive = option(FilterFields, "filter_positive", "best")
    train_positives: TrainPositives = option(FilterFields, "train_positives", "best")
    # the recipe
    negatives: NegativeRecipe = field(
        default="tele",
        metadata={"help": "Negative recipe: 'tele' (ANN + lookahead + momentum), 'ann' (ANCE: ANN only), 'bm25' "
                          "(BM25 negatives every episode), 'ann+bm25', 'tele+bm25'."})
    tele_sources: str = field(
        default=",".join(TELE_SOURCES),
        metadata={"help": "Sources of the 'tele' recipe, for ablations (e.g. 'ann,lookahead' = no momentum)."})
    continue_training: bool = field(
        default=False, metadata={"help": "Start episode i from episode i-1's model instead of the base model."})
    lookahead_all_positives: bool = field(
        default=False, metadata={"help": "Lookahead from every positive of a query, not only the first."})
    # training
    episode_train_n_passages: str = field(
        default="", metadata={"help": "Per-episode --train_n_passages, comma-separated (e.g. '16,32,32' as in the "
                                      "paper's MS MARCO runs); empty uses --train_n_passages for every episode."})
    train_nproc: int = field(
        default=1, metadata={"help": "Processes per training episode: >1 launches `torchrun --nproc_per_node N` "
                                     "with --negatives_x_device (negatives shared across devices)."})
    untie_encoder: bool = field(default=False, metadata={"help": "Separate query and passage encoders."})
    # current Tevatron's options (--backend v2); passed to training only when set
    query_prefix: str = field(default="", metadata={"help": "Text put before every query, e.g. 'query: ' (v2)."})
    passage_prefix: str = field(default="", metadata={"help": "Text put before every passage (v2)."})
    append_eos_token: bool = field(default=False, metadata={"help": "Append the EOS token to every input, for "
                                                                    "last-token pooling (v2)."})
    pad_to_max_length: bool = field(default=False, metadata={"help": "Pad training batches to --q_max_len / "
                                                                     "--p_max_len as Tevatron 0.1.0 always does (v2; "
                                                                     "default: to the longest input)."})
    attn_implementation: str = field(default="", metadata={"help": "Attention kernel: sdpa, eager, "
                                                                   "flash_attention_2 (v2; default sdpa)."})
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of the whole model (v2)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (v2)."})
    lora_target_modules: str = field(default="", metadata={"help": "Modules LoRA adapts, comma-separated (v2; "
                                                                   "default Tevatron's decoder projections)."})
    grad_cache: bool = field(default=False, metadata={"help": "Gradient caching: large batches in small chunks (v2)."})
    gc_q_chunk_size: int = field(default=4, metadata={"help": "GradCache query chunk (v2)."})
    gc_p_chunk_size: int = field(default=32, metadata={"help": "GradCache passage chunk (v2)."})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision for training (GPU)."})
    fp16: bool = field(default=False, metadata={"help": "fp16 mixed precision for training (GPU)."})
    logging_steps: int = field(default=10, metadata={"help": "Training log interval."})
    # encoding and search
    encode_batch_size: int = field(default=128, metadata={"help": "Batch size of encoding."})
    embedding_dtype: EmbeddingDtype = field(default="float16", metadata={"help": "How embeddings are stored."})
    encode_amp: Amp | None = field(default=None, metadata={"help": "Autocast for encoding on GPU."})
    search_backend: SearchBackend = field(default="faiss", metadata={"help": "Exact search backend."})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto."})
    keep_embeddings: bool = field(default=False, metadata={"help": "Keep corpus embeddings after an episode "
                                                                   "(removed by default: they are rebuilt cheaply "
                                                                   "from the model and dominate disk use)."})
    token_cache_dir: str | None = field(default=None, metadata={"help": "Token caches (default RUN/token_cache)."})
    base_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Folder shared by runs with the same base model and collection: the base model's "
                          "encoding and rankings (episode 0) are computed there once and copied into each run."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})
    # evaluation
    eval_depth: int = field(default=1000, metadata={"help": "Depth of the evaluation runs."})
    selection_metric: str = field(default=DEFAULT_METRIC, metadata={"help": "Metric of the dev-split selection and "
                                                                            "of the verdict (e.g. MRR@10, R@100)."})
    selection_rule: SelectionRule = field(
        default="guarded",
        metadata={"help": "How the kept episode is chosen on dev: 'guarded' (an episode replaces the kept one, at "
                          "first the start model, only when its per-query dev gain over it is beyond noise: the "
                          "paired bootstrap 95%% interval above zero) or 'best' (the best dev figure, however "
                          "small the gain)."})
    baselines: Baselines = field(
        default="auto",
        metadata={"help": "Baselines of the verdict: 'bm25' (Pyserini BM25 on the evaluated queries, computed once "
                          "and reused), 'none', or 'auto' (bm25 when Pyserini is installed)."})
    analyze: bool = field(default=True, metadata={"help": "Write the forgetting/convergence report at the end."})
    analysis_probe_k: int = field(default=20, metadata={"help": "Probe of the forgetting analysis: each training "
                                                                "query's top-k base-model negatives."})
    # a sample: the measures hold every analysed query's pairs as Python objects (memory linear in the queries)
    analysis_max_queries: int | None = field(default=10_000, metadata={"help": "Analyse a deterministic sample of "
                                                                              "this many training queries (all of "
                                                                              "them when fewer); 0 or None: all."})

    def __post_init__(self):
        super().__post_init__()  # each group's checks, and every choice
        unknown = set(self.tele_source_list) - set(TELE_SOURCES)
        if unknown:
            raise ValueError(f"--tele_sources: unknown source(s) {sorted(unknown)}; use {', '.join(TELE_SOURCES)}")
        if self.episode_train_n_passages and len(self.n_passages_by_episode()) != self.num_episodes:
            raise ValueError(f"--episode_train_n_passages needs {self.num_episodes} values, got "
                             f"'{self.episode_train_n_passages}'")
        if self.dev_split and self.dev_from_train:
            raise ValueError("--dev_split and --dev_from_train both name a dev split; pass one")
        if self.dev_split and self.dev_split == self.eval_split:
            raise ValueError(f"--dev_split '{self.dev_split}' is the evaluated (test) split: selecting on it would "
                             "peek at the test set")
        parse_measure(self.selection_metric)  # a one-line error now rather than after the last episode
        # lazy: mining.filters loads torch (through retrieval.scoring), which parsing the flags does not need
        from ..mining.filters import FilterSettings

        FilterSettings(self.max_negative_ratio, self.negative_margin, self.skip_top,
                       self.filter_positive)  # a one-line error now
        if self.momentum != "all" and "momentum" not in self.sources():
            raise ValueError(f"--momentum {self.momentum} needs the momentum source (--negatives tele with "
                             f"momentum in --tele_sources); this recipe mines {sorted(self.sources())}")
        if isinstance(self.eval_collections, str):
            self.eval_collections = [self.eval_collections]

    @property
    def tele_source_list(self) -> list[str]:
        return [s.strip() for s in self.tele_sources.split(",") if s.strip()]

    def n_passages_by_episode(self) -> list[int]:
        """train_n_passages of episodes 1..N."""
        if not self.episode_train_n_passages:
            return [self.train_n_passages] * self.num_episodes
        return [int(v) for v in self.episode_train_n_passages.split(",") if v.strip()]

    def sources(self) -> set[str]:
        """The negative sources this recipe mines."""
        recipe = set(self.negatives.split("+"))
        return (set(self.tele_source_list) if "tele" in recipe else set()) | (recipe & {"ann", "bm25"})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def result_config(self) -> dict:
        """The settings that decide results (compared when a run folder is reused)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_ONLY_FIELDS}


class ConfigError(InputFileError):
    """Bad settings file; the message names file, line and setting."""


def _config_error(path: PathLike, line: int | str | None, field_name: str, problem: str) -> ConfigError:
    return ConfigError(location(path, line, field_name, problem))


def _key_line(text: str, key: str) -> int | None:
    """The line where `key` is set in a YAML or JSON text (first match), for error messages."""
    pattern = re.compile(rf"""^\s*(?:{re.escape(key)}|["']{re.escape(key)}["'])\s*:|["']{re.escape(key)}["']\s*:""")
    return next((i for i, line in enumerate(text.splitlines(), start=1) if pattern.search(line)), None)


def load_config_file(path: str | Path) -> dict:
    """Settings from a .json or .yaml/.yml file (keys are the flag names without dashes).

    A malformed or non-mapping file, or an unknown setting, raises ConfigError (file, line, setting, closest known
    name).

    Args:
        path: the settings file.

    Returns:
        {setting name: value}.
    """
    path = Path(path)
    text = read_text(path, _config_error)
    kind = "yaml" if path.suffix in (".yaml", ".yml") else "json"
    if kind == "yaml":
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            line = mark.line + 1 if mark else None
            raise _config_error(path, line, "<yaml>", f"malformed YAML ({problem})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise _config_error(path, e.lineno, "<json>", f"malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, dict):
        raise _config_error(path, 1, f"<{kind}>", f"expected a mapping of setting names to values, got "
                                                  f"{type(data).__name__}")
    known = [f.name for f in dataclasses.fields(EpisodeArguments)]
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "; settings are the flag names without dashes"
            raise _config_error(path, _key_line(text, str(key)), str(key), f"unknown setting{hint}")
    return data


def config_differences(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two result configs; a setting one of them lacks (a run made before the setting
    existed) counts as its default."""
    defaults = {f.name: f.default for f in dataclasses.fields(EpisodeArguments) if f.default is not dataclasses.MISSING}
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k, defaults.get(k))!r} -> {new.get(k, defaults.get(k))!r}" for k in keys
            if k not in RUNTIME_ONLY_FIELDS and old.get(k, defaults.get(k)) != new.get(k, defaults.get(k))]
