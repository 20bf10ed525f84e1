"""A model folder saved by the installed backend is a sentence-transformers model: `SentenceTransformer(folder)`
embeds queries and passages as this package's encoder does (pooling, normalisation, prefixes as prompts), and what
sentence-transformers cannot express is refused with a warning and no modules.json."""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from transformers import AutoConfig, AutoTokenizer

from tevatron_tele.backends import get_backend, load_encoder
from tevatron_tele.data.collections import load_collection
from tevatron_tele.data.token_cache import build_token_cache
from tevatron_tele.model_export import MODULES_FILE, sentence_transformers_obstacle, write_sentence_transformers_config
from tevatron_tele.retrieval.encode import encode_texts

BACKEND = get_backend()
P_MAX_LEN = 24
Q_MAX_LEN = 16


def _save(model_dir, out, *, prefixes: bool = False, **model_kw):
    """The backend's training model built on `model_dir` and saved as training saves it (`backend.save_model`)."""
    if BACKEND.NAME == "v1":
        data_kw = {"p_max_len": P_MAX_LEN, "q_max_len": Q_MAX_LEN}
    else:
        data_kw = {"passage_max_len": P_MAX_LEN, "query_max_len": Q_MAX_LEN}
        if prefixes:
            data_kw.update(query_prefix="query: ", passage_prefix="passage: ")
    model = BACKEND.build_model(BACKEND.TeleModelArguments(model_name_or_path=str(model_dir), **model_kw),
                                BACKEND.TeleDataArguments(**data_kw),
                                BACKEND.TeleTrainingArguments(output_dir=str(out.parent / "unused"), use_cpu=True,
                                                              report_to="none"))
    BACKEND.save_model(model, out, AutoTokenizer.from_pretrained(model_dir))
    return out


@pytest.fixture(scope="module")
def texts(synthetic_dir) -> tuple[list[str], list[str]]:
    """Short queries and passages, some longer than P_MAX_LEN tokens (both sides must cut them alike)."""
    collection = load_collection(synthetic_dir, "test")
    queries = [collection.queries[q] for q in sorted(collection.queries)[:12]]
    passages = [collection.corpus.passage_text(i, "") for i in range(20)]
    passages += [passages[0] + " " + passages[1] + " " + passages[2]]
    return queries, passages


def _ours(folder, texts, tmp_path) -> tuple[np.ndarray, np.ndarray]:
    """Query and passage embeddings from backends.load_encoder + retrieval.encode, through token caches."""
    model, tokenizer = load_encoder(folder)
    out = []
    for name, items, max_len, is_query in (("q", texts[0], Q_MAX_LEN, True), ("p", texts[1], P_MAX_LEN, False)):
        cache = build_token_cache(tmp_path / f"cache-{name}", [f"{name}{i}" for i in range(len(items))], items,
                                  tokenizer, max_len)
        out.append(encode_texts(model, tokenizer, cache, is_query=is_query, max_len=max_len, batch_size=8,
                                progress=False))
    assert max(len(tokenizer(q)["input_ids"]) for q in texts[0]) <= Q_MAX_LEN  # else the query lengths differ
    assert max(len(tokenizer(p)["input_ids"]) for p in texts[1]) > P_MAX_LEN  # the cut is tested
    return out[0], out[1]


def _same_as_sentence_transformers(folder, texts, tmp_path) -> SentenceTransformer:
    queries, passages = _ours(folder, texts, tmp_path)
    st = SentenceTransformer(str(folder), device="cpu")
    assert st.max_seq_length == P_MAX_LEN
    np.testing.assert_allclose(st.encode_query(texts[0], batch_size=5), queries, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(st.encode_document(texts[1], batch_size=5), passages, atol=2e-5, rtol=1e-4)
    return st


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("normalize", [False, True])
def test_saved_model_embeds_alike_in_sentence_transformers(tiny_model_dir, texts, tmp_path, pooling, normalize):
    folder = _save(tiny_model_dir, tmp_path / "model", pooling=pooling, normalize=normalize)
    modules = json.loads((folder / MODULES_FILE).read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling"] + (["2_Normalize"] if normalize else [])
    st = _same_as_sentence_transformers(folder, texts, tmp_path)
    assert st.similarity_fn_name == ("cosine" if normalize else "dot")
    vectors = st.encode_document(texts[1][:3])
    norms = np.linalg.norm(vectors, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5) == normalize


def test_cls_and_mean_folders_differ(tiny_model_dir, texts, tmp_path):
    """The pooling written is the one used: the same weights give other vectors under the other pooling."""
    cls = SentenceTransformer(str(_save(tiny_model_dir, tmp_path / "cls", pooling="cls")), device="cpu")
    mean = SentenceTransformer(str(_save(tiny_model_dir, tmp_path / "mean", pooling="mean")), device="cpu")
    assert not np.allclose(cls.encode_document(texts[1][:4]), mean.encode_document(texts[1][:4]), atol=1e-3)


# Backend-specific tests are defined only in the environment they belong to (a skip fails under CI=true).
if BACKEND.NAME == "v2":  # prefixes and last-token pooling are current Tevatron's
    @pytest.mark.parametrize("pooling", ["mean", "last"])
    def test_prefixes_become_prompts(tiny_model_dir, texts, tmp_path, pooling):
        folder = _save(tiny_model_dir, tmp_path / "model", prefixes=True, pooling=pooling, normalize=True)
        st = _same_as_sentence_transformers(folder, texts, tmp_path)
        assert st.prompts["query"] == "query: " and st.prompts["document"] == "passage: "


if BACKEND.NAME == "v1":  # untied encoders and the linear pooler are Tevatron 0.1.0's
    @pytest.mark.parametrize("option", ["untie_encoder", "add_pooler"])
    def test_untied_or_pooled_model_is_refused_with_a_warning(tiny_model_dir, tmp_path, caplog, option):
        hidden = AutoConfig.from_pretrained(tiny_model_dir).hidden_size
        with caplog.at_level(logging.WARNING, logger="tevatron_tele.model_export"):
            folder = _save(tiny_model_dir, tmp_path / "model", pooling="mean", **{option: True},
                           projection_in_dim=hidden, projection_out_dim=hidden)
        assert not (folder / MODULES_FILE).exists() and not (folder / "1_Pooling").exists()
        assert (folder / "tele_config.json").exists()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "not written as a sentence-transformers model" in warnings[0]
        load_encoder(folder)  # still this package's (and Tevatron's) model


@pytest.mark.parametrize("option, words", [({"lora": True}, "LoRA adapter"),
                                           ({"append_eos_token": True}, "end-of-sequence"),
                                           ({"untie_encoder": True}, "untied"), ({"add_pooler": True}, "pooler")])
def test_obstacles_are_named(tmp_path, caplog, option, words):
    config = {"pooling": "mean", "normalize": True, **option}
    assert words in sentence_transformers_obstacle(config)
    with caplog.at_level(logging.WARNING, logger="tevatron_tele.model_export"):
        assert not write_sentence_transformers_config(tmp_path, config, embedding_dimension=8)
    assert list(tmp_path.iterdir()) == [] and words in caplog.text


def test_written_files(tmp_path):
    """The classic layout, with last-token pooling, the prompts and the similarity."""
    config = {"pooling": "last", "normalize": False, "query_prefix": "q: ", "passage_prefix": ""}
    assert write_sentence_transformers_config(tmp_path, config, embedding_dimension=8, max_seq_length=77)
    pooling = json.loads((tmp_path / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == 8
    assert [k for k, v in pooling.items() if v is True] == ["pooling_mode_lasttoken", "include_prompt"]
    assert json.loads((tmp_path / "sentence_bert_config.json").read_text())["max_seq_length"] == 77
    st_config = json.loads((tmp_path / "config_sentence_transformers.json").read_text())
    assert st_config["prompts"] == {"query": "q: "} and st_config["similarity_fn_name"] == "dot"
    assert not (tmp_path / "2_Normalize").exists()


def test_package_import_leaves_sentence_transformers_out():
    script = ("import sys, tevatron_tele, tevatron_tele.model_export, tevatron_tele.backends, "
              "tevatron_tele.runner.selection, tevatron_tele.retrieval.search\n"
              "assert 'sentence_transformers' not in sys.modules, 'imported at package import'\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
