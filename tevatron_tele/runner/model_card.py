"""The model card (`README.md`) of a run's kept model: what it is, how it was made, how well it does, how to use it.

`judge_run` writes it into the kept episode's model folder (`RUN/best/model/README.md`) once the episode is chosen: base
model, recipe and settings (RUN/manifest.json), the collection, the dev and test figures of the start and the kept
episode (their eval.json) with the BM25 baseline, the verdict line (RUN/best.json), the command that reproduces the run,
and how to load the model with sentence-transformers, Pyserini and Tevatron. No card goes into the start model's folder
(episode 0 kept: the base model's, never ours to write into), nor over a README.md this module did not write.
"""
from __future__ import annotations

import dataclasses
import logging
import shlex
from pathlib import Path

from .. import __version__
from ..data.trec import read_run
from ..evaluation.metrics import evaluate_run
from ..model_config import read_tele_config
from ..model_export import MODULES_FILE, sentence_transformers_obstacle
from ..utils import atomic_path, read_json, read_json_or_none
from .config import RUNTIME_ONLY_FIELDS, EpisodeArguments
from .workspace import RunFolder

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
CARD_MARKER = "<!-- written by tevatron-tele (runner.model_card); rewritten when the run is judged again -->"
_EVAL_INFO_KEYS = ("collection", "num_queries", "num_judged_queries", "num_ranked_queries")


@dataclasses.dataclass
class CardFacts:
    """What the card says, read from the run folder."""

    model_dir: Path
    run_dir: Path
    episode: int
    config: dict
    versions: dict
    verdict: dict
    tele_config: dict
    start_eval: dict
    kept_eval: dict
    bm25: dict | None = None
    sentence_transformers: bool = False


def reproduce_command(config: dict, output_dir: str | Path) -> str:
    """The `driver.episodes` command that runs the same recipe again: the settings that differ from the defaults.

    Args:
        config: the run's result config (RUN/manifest.json "config").
        output_dir: the run folder to write.

    Returns:
        A shell command, one flag per line.
    """
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(EpisodeArguments)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    flags = [f"--output_dir {shlex.quote(str(output_dir))}"]
    for key, value in config.items():
        if key in RUNTIME_ONLY_FIELDS or (key in defaults and value == defaults[key]) or value is None:
            continue
        if isinstance(value, list):
            flags.append(" ".join([f"--{key}", *(shlex.quote(str(v)) for v in value)]))
        elif isinstance(value, bool):
            flags.append(f"--{key} {'true' if value else 'false'}")
        else:
            flags.append(f"--{key} {shlex.quote(str(value))}")
    return " \\\n    ".join(["python -m tevatron_tele.driver.episodes", *flags])


def _front_matter(facts: CardFacts) -> list[str]:
    tags = ["dense-retrieval", "tevatron", "tevatron-tele", "ance-tele"]
    lines = ["---", f"library_name: {'sentence-transformers' if facts.sentence_transformers else 'transformers'}"]
    if facts.sentence_transformers:
        tags = ["sentence-transformers", "feature-extraction", *tags]
        lines.append("pipeline_tag: sentence-similarity")
    base = str(facts.config.get("model_name_or_path", ""))
    if base and not Path(base).is_absolute() and not base.startswith("."):
        lines.append(f"base_model: {base}")  # a hub name; a local folder means nothing to a reader elsewhere
    return [*lines, "tags:", *(f"- {t}" for t in tags), "---", ""]


def _settings_section(facts: CardFacts) -> list[str]:
    c, t = facts.config, facts.tele_config
    negatives = c.get("negatives", "?")
    if "tele" in negatives:
        negatives += f" (sources: {c.get('tele_sources', '')}; momentum: {c.get('momentum', '')})"
    lines = ["## Base model, recipe and settings", "",
             f"- Base model: `{c.get('model_name_or_path')}` (every episode trains from it)",
             f"- Negatives: {negatives}; {c.get('num_episodes')} episodes, {c.get('refresh_steps')} steps in each "
             f"but the last, {c.get('num_train_epochs')} epochs in the last; the kept one is episode {facts.episode}",
             f"- Encoding: {t.get('pooling', 'cls')} pooling, "
             f"{'cosine (normalised vectors)' if t.get('normalize') else 'dot product'}, temperature "
             f"{t.get('temperature', c.get('temperature'))}; queries up to {c.get('q_max_len')} tokens, passages up "
             f"to {c.get('p_max_len')} (a title is joined to its text by the separator token)",
             f"- Training: learning rate {c.get('learning_rate')}, {c.get('per_device_train_batch_size')} queries x "
             f"{c.get('train_n_passages')} passages per batch, seed {c.get('seed')}, Tevatron backend "
             f"{t.get('backend', c.get('backend'))}"]
    for key, name in (("query_prefix", "Query prefix"), ("passage_prefix", "Passage prefix")):
        if t.get(key):
            lines.append(f"- {name}: `{t[key]!r}`")
    versions = ", ".join(f"{k} {v}" for k, v in facts.versions.items())
    lines += ["", f"Made with tevatron-tele {__version__}" + (f" ({versions})." if versions else "."), "",
              "<details><summary>Every setting of the run (RUN/manifest.json)</summary>", "",
              "| setting | value |", "|---|---|",
              *(f"| {k} | `{v}` |" for k, v in facts.config.items()), "", "</details>", ""]
    return lines


def _figure(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _results_section(facts: CardFacts) -> list[str]:
    c = facts.config
    lines = ["## Collection and results", "",
             f"Trained on the `{c.get('train_split')}` queries of `{c.get('collection')}`; evaluated on its "
             f"`{c.get('eval_split')}` split" + (f", the episode chosen on `{c['dev_split']}`" if c.get("dev_split")
                                                 else "") + ".", "",
             f"**Verdict:** {facts.verdict.get('text', '(none)')}", ""]
    for name, kept in facts.kept_eval.items():
        measures = [m for m in kept if m not in _EVAL_INFO_KEYS]
        start = facts.start_eval.get(name, {})
        lines += [f"### {name} ({kept.get('num_judged_queries', '?')} judged queries)", "",
                  "| model | " + " | ".join(measures) + " |", "|---" * (len(measures) + 1) + "|",
                  "| start (episode 0, the base model) | " + " | ".join(_figure(start.get(m, "")) for m in measures)
                  + " |",
                  f"| this model (episode {facts.episode}) | " + " | ".join(_figure(kept[m]) for m in measures) + " |"]
        if facts.bm25 and name.endswith(f"/{c.get('eval_split')}"):
            lines.append("| BM25 (Pyserini, RUN/bm25/test.trec) | "
                         + " | ".join(_figure(facts.bm25.get(m, "")) for m in measures) + " |")
        lines.append("")
    if not facts.bm25:
        lines += ["No BM25 baseline was run (--baselines none, or Pyserini absent).", ""]
    return lines


def _reproduce_section(facts: CardFacts) -> list[str]:
    return ["## Reproduce", "", "```bash", reproduce_command(facts.config, facts.run_dir), "```", "",
            "In the run's own folder the command finds the finished run and reuses it; give another --output_dir to "
            "run it again. The kept episode is chosen by the same rule, and its folder gets this card.", ""]


def _sentence_transformers_usage(facts: CardFacts) -> list[str]:
    lines = ["### sentence-transformers", ""]
    if not facts.sentence_transformers:
        reason = sentence_transformers_obstacle(facts.tele_config) or f"the folder has no {MODULES_FILE}"
        return [*lines, f"Not loadable as a sentence-transformers model: {reason}.", ""]
    tokenizer_config = read_json_or_none(facts.model_dir / "tokenizer_config.json") or {}
    sep = tokenizer_config.get("sep_token") if isinstance(tokenizer_config.get("sep_token"), str) else ""
    titled = f"A title {sep} the text of a passage" if sep else "A title the text of a passage"
    return [*lines, "```python", "from sentence_transformers import SentenceTransformer", "",
            f"model = SentenceTransformer({str(facts.model_dir)!r})",
            'queries = model.encode_query(["what is a dense retriever?"])',
            f"passages = model.encode_document([{titled!r}, 'another passage'])  # title and text as trained",
            "scores = model.similarity(queries, passages)  # "
            + ("cosine" if facts.tele_config.get("normalize") else "dot product"), "```", "",
            f"It pools, normalises and prefixes as in training, and cuts every input at {facts.config.get('p_max_len')}"
            f" tokens (training cut queries at {facts.config.get('q_max_len')}).", ""]


def _pyserini_usage(facts: CardFacts) -> list[str]:
    t, model = facts.tele_config, str(facts.model_dir)
    encoder = f"{model}/query_model" if t.get("untie_encoder") else model
    lines = ["### Pyserini", ""]
    if t.get("pooling", "cls") not in ("cls", "mean") or t.get("add_pooler") or t.get("append_eos_token"):
        return [*lines, "Pyserini's `auto` query encoder pools cls or mean only, without a linear pooler or an "
                        "appended end-of-sequence token: encode queries with this package instead.", ""]
    # Pyserini joins its prefix to the query with a space
    prefix = f" --query-prefix {shlex.quote(t['query_prefix'].rstrip())}" if t.get("query_prefix") else ""
    passages = f" --passages {shlex.quote(str(facts.config['passages']))}" if facts.config.get("passages") else ""
    return [*lines, "Encode the corpus, write it as a Pyserini index, and search it with Pyserini's own command "
                    "(queries: a `qid<TAB>text` file):", "", "```bash",
            f"python -m tevatron_tele.driver.encode --model_dir {shlex.quote(model)} --collection "
            f"{shlex.quote(str(facts.config.get('collection')))}{passages} --encode corpus "
            f"--p_max_len {facts.config.get('p_max_len')} --output EMB/corpus",
            "python -m tevatron_tele.driver.export_index --embeddings EMB/corpus --output INDEX",
            f"python -m pyserini.search.faiss --index INDEX --topics queries.tsv --encoder {shlex.quote(encoder)} "
            f"--encoder-class auto --pooling {t.get('pooling', 'cls')}{' --l2-norm' if t.get('normalize') else ''}"
            f"{prefix} --output run.trec --hits 1000", "```", ""]


def _tevatron_usage(facts: CardFacts) -> list[str]:
    t, model = facts.tele_config, shlex.quote(str(facts.model_dir))
    flags = f"--pooling {t.get('pooling', 'cls')}" + (" --normalize" if t.get("normalize") else "")
    for key in ("query_prefix", "passage_prefix"):
        flags += f" --{key} {shlex.quote(t[key])}" if t.get(key) else ""
    return ["### Tevatron and tevatron-tele", "", "```python", "from tevatron_tele.backends import load_encoder", "",
            f"model, tokenizer = load_encoder({str(facts.model_dir)!r})  # pooling and normalisation from "
            "tele_config.json", "```", "",
            f"Current Tevatron: `python -m tevatron.retriever.driver.encode --model_name_or_path {model} {flags} ...`."
            " Tevatron 0.1.0's `DenseModelForInference.build` reads the folder too (untied encoders and pooler "
            "included) but always pools CLS without normalising"
            + (", which is this model's own encoding." if t.get("pooling", "cls") == "cls" and not t.get("normalize")
               else ": use `load_encoder` above for this model."), ""]


def model_card_text(facts: CardFacts) -> str:
    """The card's markdown.

    Args:
        facts: what the run folder says about the kept model.

    Returns:
        The text of README.md.
    """
    title = (f"# {Path(str(facts.config.get('collection', 'collection'))).name} dense retriever "
             f"({facts.config.get('negatives', '?')} negatives, episode {facts.episode})")
    lines = [*_front_matter(facts), CARD_MARKER, "", title, "",
             f"A dense retriever fine-tuned from `{facts.config.get('model_name_or_path')}` with tevatron-tele "
             f"(ANCE-Tele's teleportation negatives on Tevatron), kept from the run `{facts.run_dir}`.", "",
             *_settings_section(facts), *_results_section(facts), *_reproduce_section(facts), "## Use it", "",
             *_sentence_transformers_usage(facts), *_pyserini_usage(facts), *_tevatron_usage(facts)]
    return "\n".join(lines).rstrip("\n") + "\n"


def _bm25_figures(bm25_run: Path | None, test_qrels, measures: list[str]) -> dict | None:
    if bm25_run is None or test_qrels is None or not Path(bm25_run).exists():
        return None
    return evaluate_run(read_run(bm25_run), test_qrels, measures)


def write_model_card(folder: RunFolder, result: dict, *, test_qrels=None, bm25_run: Path | None = None) -> Path | None:
    """Write README.md into the kept episode's model folder (atomically), from the run's own files.

    Args:
        folder: the run folder (manifest.json, the episodes' eval.json).
        result: the verdict `judge_run` has just written (RUN/best.json: `selected`, `text`).
        test_qrels: qrels of the test split, to evaluate the BM25 run with the episodes' measures.
        bm25_run: the BM25 TREC run of the test queries, when there is one.

    Returns:
        The card's path; None when none is written (episode 0 kept, no model folder, or someone else's README.md).
    """
    episode = int(result["selected"])
    if episode == 0:
        logger.info("model card: the start model (episode 0) is kept; its folder is the base model's, so no card "
                    "is written into it")
        return None
    model_dir = folder.model(episode)
    card = model_dir / CARD_FILE
    if not model_dir.is_dir():
        logger.warning("model card: %s is not there; no card written", model_dir)
        return None
    if card.exists() and CARD_MARKER not in card.read_text(encoding="utf-8", errors="replace"):
        logger.warning("model card: %s was not written by tevatron-tele; it is left as it is", card)
        return None
    manifest = read_json(folder.manifest_path)
    kept_eval = read_json(folder.eval(episode))
    measures = [m for m in next(iter(kept_eval.values()), {}) if m not in _EVAL_INFO_KEYS]
    facts = CardFacts(model_dir=model_dir, run_dir=folder.root, episode=episode,
                      config=manifest.get("config", {}), versions=manifest.get("versions", {}), verdict=result,
                      tele_config=read_tele_config(model_dir), start_eval=read_json_or_none(folder.eval(0)) or {},
                      kept_eval=kept_eval, bm25=_bm25_figures(bm25_run, test_qrels, measures),
                      sentence_transformers=(model_dir / MODULES_FILE).is_file())
    with atomic_path(card) as tmp:
        tmp.write_text(model_card_text(facts), encoding="utf-8")
    logger.info("model card: %s", card)
    return card
