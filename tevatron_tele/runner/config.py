"""The episode runner's settings: one dataclass, from flags (HfArgumentParser) or a YAML/JSON file."""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..data.pools import TELE_SOURCES
from ..data.sampling import DEFAULT_SOURCE_WEIGHTS_TEXT
from ..evaluation.metrics import parse_measure
from ..evaluation.verdict import SELECTION_RULES
from ..utils import InputFileError, PathLike, location, read_text

NEGATIVE_RECIPES = ("tele", "ann", "bm25", "ann+bm25", "tele+bm25")

# Fields that change how a run is carried out but not what it computes; a rerun may change them.
RUNTIME_ONLY_FIELDS = frozenset({
    "output_dir", "analyze", "device", "encode_batch_size", "keep_embeddings", "progress", "logging_steps",
    "token_cache_dir", "base_cache_dir", "analysis_max_queries", "analysis_probe_k", "baselines",
})


@dataclass
class EpisodeArguments:
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
    selection_metric: str = field(default="nDCG@10", metadata={"help": "Metric of the dev-split selection and of "
                                                                       "the verdict (e.g. MRR@10, R@100)."})
    selection_rule: str = field(
        default="guarded",
        metadata={"help": "How the kept episode is chosen on dev: 'guarded' (an episode replaces the kept one, at "
                          "first the start model, only when its per-query dev gain over it is beyond noise: the "
                          "paired bootstrap 95%% interval above zero) or 'best' (the best dev figure, however "
                          "small the gain)."})
    baselines: str = field(
        default="auto",
        metadata={"help": "Baselines of the verdict: 'bm25' (Pyserini BM25 on the evaluated queries, computed once "
                          "and reused), 'none', or 'auto' (bm25 when Pyserini is installed)."})
    eval_collections: list[str] = field(
        default_factory=list,
        metadata={"help": "More collections (BEIR-style dirs, test split) evaluated zero-shot after every episode."})
    num_episodes: int = field(default=3, metadata={"help": "Number of training episodes."})
    negatives: str = field(
        default="tele",
        metadata={"help": "Negative recipe: 'tele' (ANN + lookahead + momentum), 'ann' (ANCE: ANN only), 'bm25' "
                          "(BM25 negatives every episode), 'ann+bm25', 'tele+bm25'."})
    tele_sources: str = field(
        default="ann,lookahead,momentum",
        metadata={"help": "Sources of the 'tele' recipe, for ablations (e.g. 'ann,lookahead' = no momentum)."})
    refresh_steps: int = field(
        default=0,
        metadata={"help": "Quick refresh: episodes before the last stop after this many optimizer steps, with the "
                          "learning-rate schedule of the full run (0 = train every episode fully)."})
    continue_training: bool = field(
        default=False, metadata={"help": "Start episode i from episode i-1's model instead of the base model."})
    depth: int = field(default=200, metadata={"help": "Rank depth searched for ANN / lookahead / BM25 negatives."})
    sample: int = field(default=30, metadata={"help": "Negatives kept per source per query (random sample of the "
                                                      "top --depth; 0 keeps all)."})
    lookahead_all_positives: bool = field(
        default=False, metadata={"help": "Lookahead from every positive of a query, not only the first."})
    max_negative_ratio: float | None = field(
        default=None,
        metadata={"help": "Positive-aware filter, every source: drop a candidate d that the mining model scores "
                          "S(q,d) > s+ - (1-R)*|s+| (= R*s+ when s+ >= 0; s+ the score of the --filter_positive "
                          "positive), e.g. 0.95. Pool i+1 is then mined before episode i's corpus embeddings are "
                          "removed."})
    train_positives: str = field(
        default="all",
        metadata={"help": "The positives a pool entry keeps for training: 'all' judged ones, or the 'best' one (the "
                          "mining model's highest-scored; the others stay out of the negatives). Needs the mining "
                          "model's scores, as the filter does."})
    filter_positive: str = field(
        default="weakest",
        metadata={"help": "The positive whose score s+ the filter compares candidates with: 'weakest' (the lowest "
                          "S(q,d+); drops most on collections with many judged positives per query) or 'best'."})
    negative_margin: float | None = field(
        default=None, metadata={"help": "Positive-aware filter: drop a candidate d with S(q,d) > s+ - M."})
    skip_top: int = field(default=0, metadata={"help": "Never take the K best-ranked candidates of a ranking (ANN, "
                                                       "lookahead, BM25) as negatives."})
    momentum: str = field(
        default="all",
        metadata={"help": "Momentum negatives: 'all' (the whole previous pool), 'forgotten-first' (those model "
                          "i-1 scores above the weakest positive listed once more, ahead of the rest) or "
                          "'forgotten-only'; scores from RUN/episode-<i-1>/scores.npz (with a ratio or margin "
                          "filter set, the same scores from the episode's embeddings)."})
    # training
    train_n_passages: int = field(default=8, metadata={"help": "Passages per query in a step (1 positive + n-1 "
                                                               "negatives)."})
    episode_train_n_passages: str = field(
        default="", metadata={"help": "Per-episode --train_n_passages, comma-separated (e.g. '16,32,32' as in the "
                                      "paper's MS MARCO runs); empty uses --train_n_passages for every episode."})
    train_nproc: int = field(
        default=1, metadata={"help": "Processes per training episode: >1 launches `torchrun --nproc_per_node N` "
                                     "with --negatives_x_device (negatives shared across devices)."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Queries per batch (per process)."})
    learning_rate: float = field(default=5e-6, metadata={"help": "Peak learning rate."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs of a full episode (sets the schedule)."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Linear warm-up fraction of the full schedule."})
    q_max_len: int = field(default=32, metadata={"help": "Query length in tokens."})
    p_max_len: int = field(default=128, metadata={"help": "Passage length in tokens."})
    pooling: str = field(default="cls", metadata={"help": "'cls', 'mean' or 'last' (decoder models; --backend v2) "
                                                          "pooling."})
    normalize: bool = field(default=False, metadata={"help": "Cosine similarity (L2-normalised vectors)."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of the training loss."})
    untie_encoder: bool = field(default=False, metadata={"help": "Separate query and passage encoders."})
    negative_mixing: str = field(default="concat", metadata={"help": "'concat' (reference) or 'weighted'."})
    source_weights: str = field(default=DEFAULT_SOURCE_WEIGHTS_TEXT,
                                metadata={"help": "Per-source weights for --negative_mixing weighted."})
    mask_batch_positives: bool = field(default=False, metadata={"help": "Mask other queries' judged positives "
                                                                       "in the in-batch softmax."})
    seed: int = field(default=42, metadata={"help": "Seed of training and negative sampling."})
    backend: str = field(default="auto", metadata={"help": "Tevatron that trains and encodes: 'v1' (tevatron 0.1.0), "
                                                           "'v2' (current Tevatron) or 'auto' (the installed one)."})
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
    # encoding, search, evaluation
    encode_batch_size: int = field(default=128, metadata={"help": "Batch size of encoding."})
    embedding_dtype: str = field(default="float16", metadata={"help": "Stored embedding type: float16|float32."})
    encode_amp: str | None = field(default=None, metadata={"help": "Autocast for encoding on GPU: bf16|fp16."})
    search_backend: str = field(default="faiss", metadata={"help": "Exact search backend: faiss|torch."})
    eval_depth: int = field(default=1000, metadata={"help": "Depth of the evaluation runs."})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto."})
    keep_embeddings: bool = field(default=False, metadata={"help": "Keep corpus embeddings after an episode "
                                                                   "(removed by default: they are rebuilt cheaply "
                                                                   "from the model and dominate disk use)."})
    token_cache_dir: str | None = field(default=None, metadata={"help": "Token caches (default RUN/token_cache)."})
    base_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Folder shared by runs with the same base model and collection: the base model's "
                          "encoding and rankings (episode 0) are computed there once and copied into each run."})
    logging_steps: int = field(default=10, metadata={"help": "Training log interval."})
    analyze: bool = field(default=True, metadata={"help": "Write the forgetting/convergence report at the end."})
    analysis_probe_k: int = field(default=20, metadata={"help": "Probe of the forgetting analysis: each training "
                                                                "query's top-k base-model negatives."})
    # a sample: the measures hold every analysed query's pairs as Python objects (memory linear in the queries)
    analysis_max_queries: int | None = field(default=10_000, metadata={"help": "Analyse a deterministic sample of "
                                                                              "this many training queries (all of "
                                                                              "them when fewer); 0 or None: all."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self):
        if self.negatives not in NEGATIVE_RECIPES:
            raise ValueError(f"--negatives must be one of {NEGATIVE_RECIPES}, got '{self.negatives}'")
        if self.num_episodes < 1:
            raise ValueError(f"--num_episodes must be >= 1, got {self.num_episodes}")
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
        if self.selection_rule not in SELECTION_RULES:
            raise ValueError(f"--selection_rule must be one of {', '.join(SELECTION_RULES)}; got "
                             f"'{self.selection_rule}'")
        if self.baselines not in ("auto", "bm25", "none"):
            raise ValueError(f"--baselines must be auto, bm25 or none; got '{self.baselines}'")
        if self.backend not in ("auto", "v1", "v2"):
            raise ValueError(f"--backend must be one of auto, v1, v2; got '{self.backend}'")
        from ..mining.filters import MOMENTUM_MODES, TRAIN_POSITIVES, FilterSettings

        FilterSettings(self.max_negative_ratio, self.negative_margin, self.skip_top,
                       self.filter_positive)  # a one-line error now
        if self.train_positives not in TRAIN_POSITIVES:
            raise ValueError(f"--train_positives must be one of {', '.join(TRAIN_POSITIVES)}; got "
                             f"'{self.train_positives}'")
        if self.momentum not in MOMENTUM_MODES:
            raise ValueError(f"--momentum must be one of {', '.join(MOMENTUM_MODES)}; got '{self.momentum}'")
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
        out = set()
        if "tele" in recipe:
            out.update(self.tele_source_list)
        if "ann" in recipe:
            out.add("ann")
        if "bm25" in recipe:
            out.add("bm25")
        return out

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

    Malformed YAML/JSON, a file that is not a mapping, and an unknown setting raise ConfigError naming
    file, line and setting (with the closest known name).

    Args:
        path: the settings file.

    Returns:
        {setting name: value}.
    """
    path = Path(path)
    text = read_text(path, _config_error)
    kind = "yaml" if path.suffix in (".yaml", ".yml") else "json"
    if kind == "yaml":
        import yaml

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
    """Human-readable differences between two result configs; a setting one of them lacks (a run made before
    the setting existed) counts as its default."""
    defaults = {f.name: f.default for f in dataclasses.fields(EpisodeArguments) if f.default is not dataclasses.MISSING}
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k, defaults.get(k))!r} -> {new.get(k, defaults.get(k))!r}" for k in keys
            if k not in RUNTIME_ONLY_FIELDS and old.get(k, defaults.get(k)) != new.get(k, defaults.get(k))]
