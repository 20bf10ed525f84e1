"""Encoding from the token cache: order, padding, Tevatron model variants, shards, resume, torchrun."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from tevatron_tele.retrieval.embeddings import load_all, load_embeddings, shard_prefix
from tevatron_tele.retrieval.encode import encode_texts, encode_to_file


@pytest.fixture(scope="module")
def setup(synthetic_dir, tiny_model_dir, tmp_path_factory):
    from tevatron_tele.backends import load_encoder
    from tevatron_tele.data.collections import load_collection
    from tevatron_tele.data.token_cache import corpus_token_cache, query_token_cache

    torch.set_num_threads(1)
    collection = load_collection(synthetic_dir, "train")
    model, tokenizer = load_encoder(tiny_model_dir, "cpu")
    cache_dir = tmp_path_factory.mktemp("cache")
    corpus = corpus_token_cache(collection, tokenizer, 48, cache_dir)
    queries = query_token_cache(collection, tokenizer, 16, cache_dir)
    return collection, model, tokenizer, corpus, queries


def _one_by_one(model, tokenizer, cache, positions, max_len, is_query):
    from tevatron_tele.data.examples import build_example

    rows = []
    for p in positions:
        batch = tokenizer.pad([build_example(tokenizer, cache[p], max_len)], return_tensors="pt")
        rows.append((model.encode_query if is_query else model.encode_passage)(dict(batch))[1][0].numpy())
    return np.stack(rows)


def test_length_sorted_batches_match_unpadded_encoding(setup):
    _, model, tokenizer, corpus, queries = setup
    lengths = np.asarray(corpus.lengths)
    # one item per distinct length, in a shuffled order, so batches mix lengths
    positions = [int(np.flatnonzero(lengths == n)[0]) for n in np.unique(lengths)]
    positions = [positions[i] for i in np.random.default_rng(0).permutation(len(positions))][:12]
    assert len(positions) > 3
    batched = encode_texts(model, tokenizer, corpus, positions, is_query=False, max_len=48, batch_size=5,
                           progress=False)
    single = _one_by_one(model, tokenizer, corpus, positions, 48, False)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    by_id = encode_texts(model, tokenizer, queries, [queries.ids[3], queries.ids[0]], is_query=True, max_len=16,
                         progress=False)
    np.testing.assert_allclose(by_id, _one_by_one(model, tokenizer, queries, [3, 0], 16, True), atol=1e-5)


def test_length_sorted_batches_equal_corpus_order_with_less_padding(setup, monkeypatch):
    _, model, tokenizer, corpus, _ = setup
    positions = list(range(min(len(corpus), 240)))
    lengths = np.asarray(corpus.lengths)[positions]
    assert lengths.min() < lengths.max(), "the collection's passages should vary in length"
    pad, shapes, out = tokenizer.pad, {}, {}

    def spy(*args, **kwargs):  # the tokenizer's pad, recording each batch's (rows, width)
        batch = pad(*args, **kwargs)
        shapes[sort].append(tuple(batch["input_ids"].shape))
        return batch

    monkeypatch.setattr(tokenizer, "pad", spy)
    for sort in (True, False):
        shapes[sort] = []
        out[sort] = encode_texts(model, tokenizer, corpus, positions, is_query=False, max_len=48, batch_size=16,
                                 progress=False, sort_by_length=sort)
    np.testing.assert_allclose(out[True], out[False], atol=1e-5)  # rows in the order asked for, either way
    assert [sum(rows for rows, _ in s) for s in shapes.values()] == [len(positions)] * 2
    padded = {sort: sum(rows * width for rows, width in s) for sort, s in shapes.items()}
    assert padded[True] < padded[False], padded
    widths = [width for _, width in shapes[True]]
    assert widths == sorted(widths, reverse=True), "sorted batches go longest first"


def test_tevatron_untied_and_pooler_models(setup, tiny_model_dir, tmp_path):
    from tevatron.modeling import DenseModelForInference, LinearPooler
    from transformers import AutoModel

    _, _, tokenizer, corpus, queries = setup
    # untied encoders with a linear pooler, in Tevatron's saved layout
    torch.manual_seed(0)
    for name, scale in (("query_model", 1.0), ("passage_model", 1.05)):
        lm = AutoModel.from_pretrained(tiny_model_dir)
        with torch.no_grad():
            for p in lm.parameters():
                p.mul_(scale)
        lm.save_pretrained(tmp_path / name)
    pooler = LinearPooler(input_dim=lm.config.hidden_size, output_dim=8, tied=False)
    pooler.save_pooler(str(tmp_path))
    model = DenseModelForInference.build(str(tmp_path))
    assert model.lm_q is not model.lm_p and model.pooler is not None
    positions = [0, 5, 9]
    p_emb = encode_texts(model, tokenizer, corpus, positions, is_query=False, max_len=48, batch_size=2,
                         progress=False)
    q_emb = encode_texts(model, tokenizer, queries, positions, is_query=True, max_len=16, progress=False)
    assert p_emb.shape == (3, 8) and q_emb.shape == (3, 8)
    np.testing.assert_allclose(p_emb, _one_by_one(model, tokenizer, corpus, positions, 48, False), atol=1e-5)
    # queries go through the query encoder: the same text through the passage side differs
    q_as_p = encode_texts(model, tokenizer, queries, positions, is_query=False, max_len=16, progress=False)
    assert not np.allclose(q_emb, q_as_p, atol=1e-3)


def test_shards_equal_whole_and_are_not_recomputed(setup, tmp_path):
    _, model, tokenizer, corpus, _ = setup
    kw = dict(is_query=False, max_len=48, batch_size=16, dtype="float32", model=model, tokenizer=tokenizer,
              progress=False)
    whole = encode_to_file(corpus, tmp_path / "whole", **kw)
    for i in range(3):
        encode_to_file(corpus, tmp_path / "part", shard_index=i, num_shards=3, **kw)
    a, ids_a = load_embeddings(whole)
    b, ids_b = load_all(tmp_path / "part")
    assert ids_a == ids_b == list(corpus.ids)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # a finished shard is kept: no model is needed, nothing is rewritten
    done = shard_prefix(tmp_path / "part", 1, 3)
    mtime = os.stat(f"{done}.npy").st_mtime_ns
    encode_to_file(corpus, tmp_path / "part", shard_index=1, num_shards=3, is_query=False)
    assert os.stat(f"{done}.npy").st_mtime_ns == mtime
    half = encode_to_file(corpus, tmp_path / "half", **{**kw, "dtype": "float16"})
    assert load_embeddings(half)[0].dtype == np.float16


def _driver(args, nproc=None, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "tevatron_tele.driver.encode", *args]
    else:
        cmd = [sys.executable, "-m", "tevatron_tele.driver.encode", *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(synthetic_dir, tiny_model_dir, tmp_path):
    common = ["--model_dir", str(tiny_model_dir), "--collection", str(synthetic_dir), "--encode", "positives",
              "--p_max_len", "48", "--dtype", "float32", "--cache_dir", str(tmp_path / "cache"), "--device", "cpu"]
    _driver([*common, "--output", str(tmp_path / "one" / "pos")])
    _driver([*common, "--output", str(tmp_path / "two" / "pos")], nproc=2)
    one, ids_one = load_all(tmp_path / "one" / "pos")
    two, ids_two = load_all(tmp_path / "two" / "pos")
    assert len(list((tmp_path / "two").glob("pos.shard-*.npy"))) == 2
    assert ids_one == ids_two and len(ids_one) > 10
    np.testing.assert_allclose(one, two, atol=1e-5)
    shutil.rmtree(tmp_path / "cache")


def test_corpus_encoding_reads_only_the_corpus(synthetic_dir, tiny_model_dir, tmp_path):
    """`--encode corpus` on a BEIR collection with only a test split: no queries or qrels are read, and the
    corpus token cache is the one a full load of the collection uses."""
    from tevatron_tele.driver.encode import EncodeArguments, run

    only_test = tmp_path / synthetic_dir.name
    shutil.copytree(synthetic_dir, only_test)
    (only_test / "qrels" / "train.tsv").unlink()
    (only_test / "queries.jsonl").write_text("not json\n")  # would fail if the corpus step read the queries
    torch.set_num_threads(1)
    kw = dict(model_dir=str(tiny_model_dir), encode="corpus", p_max_len=48, dtype="float32", device="cpu",
              cache_dir=str(tmp_path / "cache"))
    out = run(EncodeArguments(collection=str(only_test), output=str(tmp_path / "corpus"), **kw))
    full = run(EncodeArguments(collection=str(synthetic_dir), output=str(tmp_path / "full"), **kw))
    emb, ids = load_all(out)
    ref, ref_ids = load_all(full)
    assert ids == ref_ids and len(ids) > 100
    np.testing.assert_allclose(emb, ref, atol=1e-6)
    assert len([p for p in (tmp_path / "cache").glob("*-corpus-*") if p.is_dir()]) == 1, "one corpus cache for both"
