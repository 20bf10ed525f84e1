"""Corpus embeddings as a Pyserini dense index folder: written, kept, replaced only when it is our own, refused
otherwise; and `python -m pyserini.search.faiss` on it with our model folder ranks as our own search does."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import faiss
import numpy as np
import pytest
from transformers import AutoConfig, AutoTokenizer

from tevatron_tele.backends import load_encoder
from tevatron_tele.data.collections import load_collection
from tevatron_tele.data.token_cache import corpus_token_cache, query_token_cache
from tevatron_tele.data.trec import read_run
from tevatron_tele.model_export import write_model_configs
from tevatron_tele.retrieval.embeddings import save_embeddings, shard_prefix
from tevatron_tele.retrieval.encode import encode_texts, encode_to_file
from tevatron_tele.retrieval.pyserini_index import RECORD_FILE, export_pyserini_index
from tevatron_tele.retrieval.search import search
from tevatron_tele.utils import OutputExistsError

TIMEOUT = 600


def _shards(prefix, n=300, dim=8, seed=0, shards=2):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float16)
    ids = [f"doc-{i}" for i in range(n)]
    for i, rows in enumerate(np.array_split(np.arange(n), shards)):
        save_embeddings(shard_prefix(prefix, i, shards), vectors[rows], [ids[r] for r in rows])
    return vectors, ids


def test_index_holds_the_vectors_in_docid_order(tmp_path):
    vectors, ids = _shards(tmp_path / "corpus")
    out = export_pyserini_index(tmp_path / "corpus", tmp_path / "index")
    assert sorted(p.name for p in out.iterdir()) == ["docid", "index", RECORD_FILE]
    assert (out / "docid").read_text().splitlines() == ids
    index = faiss.read_index(str(out / "index"))
    assert index.ntotal == len(ids) and index.metric_type == faiss.METRIC_INNER_PRODUCT
    np.testing.assert_array_equal(index.reconstruct_n(0, index.ntotal), vectors.astype(np.float32))
    assert json.loads((out / RECORD_FILE).read_text())["vectors"] == len(ids)


def test_rerun_keeps_changed_input_needs_overwrite(tmp_path):
    _shards(tmp_path / "corpus")
    out = export_pyserini_index(tmp_path / "corpus", tmp_path / "index")
    written = (out / "index").stat().st_mtime_ns
    export_pyserini_index(tmp_path / "corpus", out)
    assert (out / "index").stat().st_mtime_ns == written  # same embedding files: kept
    _shards(tmp_path / "corpus", n=200, seed=1)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_pyserini_index(tmp_path / "corpus", out)
    assert faiss.read_index(str(out / "index")).ntotal == 300  # refused: untouched
    export_pyserini_index(tmp_path / "corpus", out, overwrite=True)
    assert faiss.read_index(str(out / "index")).ntotal == 200
    assert len((out / "docid").read_text().splitlines()) == 200


@pytest.mark.parametrize("kind", ["foreign folder", "file", "index beside other files"])
def test_what_it_did_not_write_is_refused_and_left_alone(tmp_path, kind):
    _shards(tmp_path / "corpus")
    out = tmp_path / "index"
    if kind == "file":
        out.write_text("precious\n")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("precious\n")
        if kind == "index beside other files":
            (out / "index").write_text("someone else's\n")
            (out / "docid").write_text("someone else's\n")
    before = sorted((p.name, p.read_text()) for p in ([out] if out.is_file() else out.iterdir()))
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match="not a Pyserini index this package wrote"):
            export_pyserini_index(tmp_path / "corpus", out, overwrite=overwrite)
    assert sorted((p.name, p.read_text()) for p in ([out] if out.is_file() else out.iterdir())) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_driver_refuses_in_one_line(tmp_path):
    _shards(tmp_path / "corpus")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "data.bin").write_bytes(b"x")
    command = [sys.executable, "-m", "tevatron_tele.driver.export_index", "--embeddings", str(tmp_path / "corpus")]
    proc = subprocess.run(command + ["--output", str(tmp_path / "taken")], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("error: ") and "taken: exists and is not a Pyserini index" in proc.stderr
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["data.bin"]
    proc = subprocess.run(command + ["--output", str(tmp_path / "new")], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len((tmp_path / "new" / "docid").read_text().splitlines()) == 300


def _model_folder(base_dir, out, pooling, normalize):
    """A model folder as training leaves it: weights, tokenizer, tele_config.json (and sentence-transformers files)."""
    shutil.copytree(base_dir, out)
    write_model_configs(out, {"pooling": pooling, "normalize": normalize, "backend": "v1"},
                        embedding_dimension=AutoConfig.from_pretrained(out).hidden_size, max_seq_length=48)
    return out


def _our_run(model_dir, collection, work, depth):
    """Our ranking: corpus and queries encoded by backends.load_encoder, exact search by retrieval.search."""
    model, tokenizer = load_encoder(model_dir)
    corpus = encode_to_file(corpus_token_cache(collection, tokenizer, 48, work / "cache"),
                            work / "emb" / "corpus", is_query=False, dtype="float32", model=model,
                            tokenizer=tokenizer, progress=False)
    cache = query_token_cache(collection, tokenizer, 64, work / "cache")
    queries = encode_texts(model, tokenizer, cache, is_query=True, max_len=64, progress=False)
    return corpus, search(queries, cache.ids, corpus, depth, progress=False)


def _same_ranking(theirs, ours, tie=1e-5, tol=1e-4) -> int:
    """Pyserini's top 10 against ours (ours searched to depth 20). A query whose top 11 scores are apart by more
    than `tie` must have the same 10 docids in the same order; one with near-ties (a random tiny model crowds its
    cosine scores), where float noise may swap neighbours, must give each of its docids our score for it.
    Every score agrees to `tol`. Returns the number of queries compared docid for docid."""
    assert set(theirs) == set(ours)
    exact = 0
    for qid, ranked in ours.items():
        their_ids, their_scores = [d for d, _ in theirs[qid]], [s for _, s in theirs[qid]]
        np.testing.assert_allclose(their_scores, [s for _, s in ranked[:10]], atol=tol, rtol=tol)
        if np.all(-np.diff([s for _, s in ranked[:11]]) > tie):
            assert their_ids == [d for d, _ in ranked[:10]], qid
            exact += 1
        else:
            our_score = dict(ranked)
            assert all(abs(our_score[d] - s) <= tol for d, s in theirs[qid]), qid
    return exact


@pytest.mark.slow  # a Pyserini process each, 45 to 90 s on 2 busy cores
@pytest.mark.parametrize("pooling, normalize, base", [("mean", True, "tiny_model_dir"), ("cls", False, "minilm_dir")])
def test_pyserini_faiss_search_ranks_as_we_do(pyserini, request, synthetic_dir, tmp_path, pooling, normalize, base):
    """Mean pooling + cosine on the tiny random BERT; CLS + dot product on MiniLM, because a random BERT's CLS
    vectors are nearly one vector (every dot product 32.00 to four places) and rank nothing."""
    collection = load_collection(synthetic_dir, "test")
    model_dir = _model_folder(request.getfixturevalue(base), tmp_path / "model", pooling, normalize)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert max(len(tokenizer(q)["input_ids"]) for q in collection.queries.values()) < 64  # no query is cut
    corpus, ours = _our_run(model_dir, collection, tmp_path, depth=20)
    index_dir = export_pyserini_index(corpus, tmp_path / "index")
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"{q}\t{text}\n" for q, text in collection.queries.items()), encoding="utf-8")
    command = [sys.executable, "-m", "pyserini.search.faiss", "--index", str(index_dir), "--topics", str(topics),
               "--encoder", str(model_dir), "--encoder-class", "auto", "--pooling", pooling,
               *(["--l2-norm"] if normalize else []), "--output", str(tmp_path / "run.trec"), "--hits", "10"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.setdefault("OPENAI_API_KEY", "dummy")  # pyserini.encode builds an OpenAI client at import
    proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=tmp_path)
    assert proc.returncode == 0, f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}"
    theirs = read_run(tmp_path / "run.trec")
    assert len(ours) == len(collection.queries) and all(len(r) == 10 for r in theirs.values())
    assert _same_ranking(theirs, ours) >= 0.75 * len(ours)
