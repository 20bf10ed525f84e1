"""A saved model folder described for other tools by `write_model_configs` (both backends): `tele_config.json` for this
package, and the files that make it a sentence-transformers model (a layout that releases 2.x to 6.x all read):

    modules.json                        Transformer (the folder itself) -> Pooling -> Normalize (with --normalize)
    sentence_bert_config.json           max_seq_length (the passage length the model was trained with)
    1_Pooling/config.json               cls, mean or lasttoken, as the model pools
    2_Normalize/                        only when the model scores by cosine
    config_sentence_transformers.json   the prefixes as prompts "query" / "document", and the similarity

so `SentenceTransformer(folder).encode_query(...)` / `.encode_document(...)` give this package's embeddings. What
sentence-transformers cannot express (`sentence_transformers_obstacle`) is refused with a warning, and the folder then
has no `modules.json`. sentence-transformers is never imported here.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .model_config import write_tele_config

logger = logging.getLogger(__name__)

MODULES_FILE = "modules.json"
POOLING_DIR = "1_Pooling"
NORMALIZE_DIR = "2_Normalize"
# sentence-transformers' Pooling option for each of our poolings
_POOLING_MODES = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "last": "pooling_mode_lasttoken"}
_ALL_POOLING_MODES = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
                      "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


def sentence_transformers_obstacle(config: dict) -> str | None:
    """What in a model's `tele_config.json` sentence-transformers cannot reproduce, if anything.

    Args:
        config: the model's tele config (pooling, normalize, untie_encoder, add_pooler, lora, append_eos_token).

    Returns:
        A sentence saying why, or None when the folder can be a sentence-transformers model.
    """
    if config.get("untie_encoder"):
        return "its query and passage encoders are untied (query_model/, passage_model/), and sentence-transformers " \
               "loads one encoder"
    if config.get("add_pooler"):
        return "it has a linear pooler (pooler.pt) after the pooling"
    if config.get("lora"):
        return "it holds a LoRA adapter, not full weights; merge the adapter into its base model first"
    if config.get("append_eos_token"):
        return "every input gets an appended end-of-sequence token (--append_eos_token), which sentence-transformers " \
               "does not add"
    if config.get("pooling", "cls") not in _POOLING_MODES:
        return f"its pooling {config.get('pooling')!r} has no sentence-transformers counterpart"
    return None


def _write_json(path: Path, obj: dict | list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def write_sentence_transformers_config(path: str | os.PathLike, config: dict, *, embedding_dimension: int,
                                       max_seq_length: int | None = None) -> bool:
    """Make `path` loadable by `SentenceTransformer(path)` with the model's own pooling, normalisation and prefixes.

    Args:
        path: a saved model folder (weights and tokenizer already there).
        config: the model's tele config (see `sentence_transformers_obstacle`; prefixes from `query_prefix`,
            `passage_prefix`).
        embedding_dimension: the encoder's hidden size.
        max_seq_length: longest input in tokens (the trained passage length); None keeps sentence-transformers' default
            (the tokenizer's limit).

    Returns:
        True when written; False (with a warning in the log, nothing written) when refused.
    """
    path = Path(path)
    obstacle = sentence_transformers_obstacle(config)
    if obstacle:
        logger.warning("%s is not written as a sentence-transformers model (no %s): %s", path, MODULES_FILE, obstacle)
        return False
    normalize = bool(config.get("normalize", False))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": POOLING_DIR, "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": NORMALIZE_DIR, "type": "sentence_transformers.models.Normalize"})
        (path / NORMALIZE_DIR).mkdir(exist_ok=True)
    chosen = _POOLING_MODES[config.get("pooling", "cls")]
    _write_json(path / POOLING_DIR / "config.json",
                {"word_embedding_dimension": int(embedding_dimension),
                 **{mode: mode == chosen for mode in _ALL_POOLING_MODES}, "include_prompt": True})
    bert_config = {"do_lower_case": False}
    if max_seq_length:
        bert_config = {"max_seq_length": int(max_seq_length), **bert_config}
    _write_json(path / "sentence_bert_config.json", bert_config)
    prompts = {name: config[key] for name, key in (("query", "query_prefix"), ("document", "passage_prefix"))
               if config.get(key)}
    _write_json(path / "config_sentence_transformers.json", {"prompts": prompts, "default_prompt_name": None,
                                                             "similarity_fn_name": "cosine" if normalize else "dot"})
    _write_json(path / MODULES_FILE, modules)  # last: a folder with modules.json has all the rest
    return True


def write_model_configs(path: str | os.PathLike, config: dict, *, embedding_dimension: int,
                        max_seq_length: int | None = None) -> None:
    """Describe a saved model folder: `tele_config.json`, and the sentence-transformers files where they fit.

    Args:
        path: the model folder the backend has just saved the weights and tokenizer into.
        config: the tele config (pooling, normalize, temperature, untie_encoder, add_pooler, backend, and the
            current-Tevatron input options).
        embedding_dimension: the encoder's hidden size.
        max_seq_length: the passage length it was trained with, when known.
    """
    write_tele_config(path, config)
    write_sentence_transformers_config(path, config, embedding_dimension=embedding_dimension,
                                       max_seq_length=max_seq_length)
