"""The current-Tevatron backend (`tevatron.retriever`): the sampler against Tevatron's own TrainDataset, the
collators, warm-up, GradCache, LoRA, last-token pooling and the train driver's flags."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from tevatron_tele.backends import installed_backend
from tevatron_tele.data.collections import load_collection
from tevatron_tele.data.corpus_export import write_corpus_jsonl
from tevatron_tele.data.pools import PoolEntry, read_pool, write_pool
from tevatron_tele.data.synthetic import build_tiny_decoder
from tevatron_tele.data.token_cache import corpus_token_cache, query_token_cache
from tevatron_tele.training.train import load_tokenizer, train

pytestmark = pytest.mark.skipif(installed_backend() != "v2", reason="needs current Tevatron (make install-v2)")

if installed_backend() == "v2":
    from tevatron.retriever.arguments import DataArguments as TevatronDataArguments
    from tevatron.retriever.arguments import TevatronTrainingArguments
    from tevatron.retriever.collator import TrainCollator
    from tevatron.retriever.dataset import TrainDataset

    from tevatron_tele.backends import tevatron_v2 as v2



@pytest.fixture(scope="module")
def collection(synthetic_dir):
    return load_collection(synthetic_dir, split="train")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def pool_files(tmp_path_factory, collection, tokenizer):
    """A pool over the synthetic collection (negatives of varied lengths, per-source lists, one source missing
    for some queries) and the corpus exported for Tevatron's own dataset."""
    root = tmp_path_factory.mktemp("v2pool")
    ids = list(collection.corpus.ids)
    entries = []
    for n, (qid, text) in enumerate(collection.queries.items()):
        positives = collection.positives(qid)
        others = [d for d in ids[(7 * n) % 50:] if d not in positives]
        ann, lookahead = others[:6 + n % 5], others[20:24]
        sources = {"ann": ann, "lookahead": lookahead} if n % 3 else {"ann": ann}
        entries.append(PoolEntry(qid, text, positives, [d for s in sources.values() for d in s], sources))
    write_pool(root / "pool.jsonl", entries)
    write_corpus_jsonl(collection.corpus, root / "corpus.jsonl", tokenizer.sep_token, progress=False)
    return root


def _data_args(pool_files, **kw):
    settings = dict(pool=str(pool_files / "pool.jsonl"), train_group_size=5, query_max_len=12, passage_max_len=32)
    settings.update(kw)
    return v2.TeleDataArguments(**settings)


def _ours(data_args, collection, tokenizer, tmp_path):
    entries = read_pool(data_args.pool)
    return v2.TeleTrainDataset(data_args, entries, tokenizer,
                               query_cache=query_token_cache(collection, tokenizer, 12, tmp_path),
                               corpus_cache=corpus_token_cache(collection, tokenizer, 32, tmp_path),
                               seed=42, collection=collection)


def _fake_trainer(epoch: int, seed: int = 42):
    return SimpleNamespace(state=SimpleNamespace(epoch=epoch), args=SimpleNamespace(seed=seed))


def test_concat_picks_what_tevatrons_own_dataset_picks(pool_files, collection, tokenizer, tmp_path):
    """Same seed, epoch and item: the same positive and negatives, in the same order, as texts."""
    theirs = TrainDataset(TevatronDataArguments(dataset_name="json", dataset_path=str(pool_files / "pool.jsonl"),
                                                corpus_name="json", corpus_path=str(pool_files / "corpus.jsonl"),
                                                train_group_size=5, query_prefix="q: ", passage_prefix="p: "))
    ours = _ours(_data_args(pool_files, feed="text", query_prefix="q: ", passage_prefix="p: "), collection,
                 tokenizer, tmp_path)
    assert len(ours) == len(theirs)
    compared = 0
    for epoch in range(3):
        theirs.set_trainer(_fake_trainer(epoch))
        ours.set_trainer(_fake_trainer(epoch))
        for item in range(len(ours)):
            if len(theirs.train_data[item]["negative_document_ids"]) < 4:
                continue  # Tevatron samples short lists with the global RNG: not reproducible by anyone
            assert ours[item] == theirs[item], (epoch, item)
            compared += 1
    assert compared > 100


def test_token_cache_feed_gives_the_inputs_of_the_text_feed(pool_files, collection, tokenizer, tmp_path):
    """Cached ids + our collator == texts + Tevatron's TrainCollator (prefixes and padding included)."""
    text_args = _data_args(pool_files, feed="text", query_prefix="q: ", passage_prefix="p: ")
    token_args = _data_args(pool_files, feed="token_cache", query_prefix="q: ", passage_prefix="p: ")
    text_ds = _ours(text_args, collection, tokenizer, tmp_path)
    token_ds = _ours(token_args, collection, tokenizer, tmp_path)
    text_collate, token_collate = TrainCollator(text_args, tokenizer), v2.make_collator(token_args, tokenizer)
    for start in (0, 8, 16):
        items = range(start, start + 8)
        expected = text_collate([text_ds[i] for i in items])
        got = token_collate([token_ds[i] for i in items])
        for side in (0, 1):
            assert torch.equal(got[side]["input_ids"], expected[side]["input_ids"])
            assert torch.equal(got[side]["attention_mask"], expected[side]["attention_mask"])


def test_pad_to_max_length_pads_as_tevatron_0_1_0(pool_files, collection, tokenizer, tmp_path):
    """Batches padded to the maximum lengths, the ids and mask of the default padding continued with padding."""
    shortest = _data_args(pool_files, pad_to_multiple_of=1)  # to the longest input
    # maximum lengths above the cache's (12 / 32 tokens), so that some padding is certain
    longest = _data_args(pool_files, pad_to_max_length=True, query_max_len=20, passage_max_len=48)
    ds = _ours(shortest, collection, tokenizer, tmp_path)
    features = [ds[i] for i in range(8)]
    plain, padded = v2.make_collator(shortest, tokenizer)(features), v2.make_collator(longest, tokenizer)(features)
    for side, max_len in ((0, 20), (1, 48)):
        assert padded[side]["input_ids"].shape[1] == max_len
        width = plain[side]["input_ids"].shape[1]
        assert torch.equal(padded[side]["input_ids"][:, :width], plain[side]["input_ids"])
        assert torch.equal(padded[side]["attention_mask"][:, :width], plain[side]["attention_mask"])
        assert not padded[side]["attention_mask"][:, width:].any()
    with pytest.raises(ValueError, match="--pad_to_max_length needs --feed token_cache"):
        _data_args(pool_files, pad_to_max_length=True, feed="text")


def test_weighted_mixing_and_masking_keys(pool_files, collection, tokenizer, tmp_path):
    args = _data_args(pool_files, negative_mixing="weighted", source_weights="lookahead=1", mask_batch_positives=True)
    ds = _ours(args, collection, tokenizer, tmp_path)
    ds.set_trainer(_fake_trainer(0))
    entries = read_pool(args.pool)
    ids = ds.corpus_cache.ids
    for item in range(len(ds)):
        query, passages, keys = ds[item]
        assert len(passages) == 5 == len(keys["passage_keys"])
        negatives = {ids[k] for k in keys["passage_keys"][1:]}
        lookahead = set(entries[item].sources.get("lookahead", []))
        if lookahead:  # 4 lookahead negatives fill all 4 slots when lookahead has all the weight
            assert negatives == lookahead
    batch = v2.make_collator(args, tokenizer)([ds[i] for i in range(4)])
    assert batch[2]["passage_keys"].shape == (20,) and batch[2]["query_positive_keys"].shape[0] == 4


def test_warmup_ratio_is_applied(tmp_path):
    """Tevatron's own warmup_ratio is dropped by transformers 5; the backend's arguments apply it."""
    assert TevatronTrainingArguments(output_dir=str(tmp_path), warmup_ratio=0.1).get_warmup_steps(100) == 0
    args = v2.TeleTrainingArguments(output_dir=str(tmp_path), warmup_ratio=0.1, learning_rate=1e-3, use_cpu=True)
    assert args.get_warmup_steps(100) == 10
    model = torch.nn.Linear(2, 2)
    from transformers import Trainer

    trainer = Trainer(model=model, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    lrs = []
    for _ in range(12):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert lrs[0] == 0 and lrs[5] == pytest.approx(5e-4) and lrs[10] == pytest.approx(1e-3)
    assert lrs[11] < lrs[10]


def _gc_inputs(tokenizer, n_queries=4, group=4):
    words = list(tokenizer.get_vocab())[10:200]
    q = tokenizer([" ".join(words[i:i + 3 + i % 4]) for i in range(n_queries)], padding=True, return_tensors="pt")
    p = tokenizer([" ".join(words[2 * i:2 * i + 5 + i % 6]) for i in range(n_queries * group)], padding=True,
                  return_tensors="pt")
    return dict(q), dict(p)


@pytest.mark.parametrize("temperature", [1.0, 0.05])
def test_grad_cache_equals_the_unchunked_step(tiny_model_dir, tokenizer, tmp_path, temperature):
    """Loss and every gradient with chunks of 1 query and 2 passages equal the plain step's (dropout off)."""
    model_args = v2.TeleModelArguments(model_name_or_path=str(tiny_model_dir), pooling="cls", normalize=True,
                                       temperature=temperature)
    data_args = v2.TeleDataArguments()
    train_args = v2.TeleTrainingArguments(output_dir=str(tmp_path / "o"), grad_cache=True, gc_q_chunk_size=1,
                                          gc_p_chunk_size=2, use_cpu=True, report_to="none")

    def fresh():
        model = v2.build_model(model_args, data_args, train_args)
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        return model

    query, passage = _gc_inputs(tokenizer)
    plain = fresh()
    plain.train()
    loss = plain(query=query, passage=passage).loss
    loss.backward()
    chunked = fresh()
    trainer = v2.make_trainer(chunked, train_args, [], tokenizer, None)
    assert isinstance(trainer, v2.TeleGradCacheTrainer)
    gc_loss = trainer.training_step(chunked, (query, passage))
    assert gc_loss.item() == pytest.approx(loss.item(), rel=1e-6)
    grads = dict(chunked.named_parameters())
    compared = 0
    for name, param in plain.named_parameters():
        if param.grad is None:  # BERT's pooler head: not on the path of the first token's hidden state
            assert grads[name].grad is None, name
            continue
        assert torch.allclose(param.grad, grads[name].grad, atol=1e-6, rtol=1e-4), name
        compared += 1
    assert compared >= 30


def _train_tiny(model_dir, collection_dir, pool, out, tmp_path, **model_kw):
    model_args = v2.TeleModelArguments(model_name_or_path=str(model_dir), **model_kw)
    data_args = v2.TeleDataArguments(pool=str(pool), collection=str(collection_dir), train_group_size=3,
                                     query_max_len=12, passage_max_len=32, token_cache_dir=str(tmp_path / "cache"),
                                     append_eos_token=model_kw.get("pooling") == "last")
    train_args = v2.TeleTrainingArguments(output_dir=str(out), per_device_train_batch_size=4, learning_rate=5e-3,
                                          num_train_epochs=1, early_stop_step=3, use_cpu=True, report_to="none",
                                          save_strategy="no", backend="v2")
    return train(model_args, data_args, train_args), data_args


def _encode_queries(model, tokenizer, texts):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(query=dict(batch)).q_reps


@pytest.mark.slow
def test_lora_adapter_trains_saves_and_loads_for_encoding(tiny_model_dir, synthetic_dir, pool_files, tmp_path):
    out, _ = _train_tiny(tiny_model_dir, synthetic_dir, pool_files / "pool.jsonl", tmp_path / "lora", tmp_path,
                         lora=True, lora_target_modules="query,value", lora_r=4, pooling="mean", normalize=True)
    assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
    config = json.loads((out / "tele_config.json").read_text())
    assert config["lora"] and config["backend"] == "v2" and config["base_model_name_or_path"] == str(tiny_model_dir)
    log = json.loads((out / "train_log.json").read_text())
    assert log["global_step"] == 3 and log["backend"] == "v2"
    model, tok = v2.load_encoder(out)
    base, _ = v2.load_encoder(tiny_model_dir, pooling="mean", normalize=True)
    texts = ["alpha beta", "gamma delta epsilon"]
    tuned, start = _encode_queries(model, tok, texts), _encode_queries(base, tok, texts)
    assert not torch.allclose(tuned, start, atol=1e-4), "the adapter changed nothing"
    # the adapter applied by hand to the base model gives the loaded model's vectors
    from peft import PeftModel
    from transformers import AutoModel

    by_hand = PeftModel.from_pretrained(AutoModel.from_pretrained(tiny_model_dir), str(out)).eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = by_hand(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert torch.allclose(tuned, expected, atol=1e-5)


@pytest.mark.slow
def test_last_token_pooling_decoder_trains_and_encodes(synthetic_dir, pool_files, tmp_path):
    decoder = build_tiny_decoder(tmp_path / "decoder", vocab_source=synthetic_dir)
    out, data_args = _train_tiny(decoder, synthetic_dir, pool_files / "pool.jsonl", tmp_path / "dec", tmp_path,
                                 pooling="last", normalize=True, temperature=0.05)
    config = json.loads((out / "tele_config.json").read_text())
    assert config["pooling"] == "last" and config["append_eos_token"] is True
    model, tok = v2.load_encoder(out)
    assert model.input_format.eos_token_id == tok.eos_token_id
    # the vector is the hidden state at the appended EOS, whatever the padding
    ids = model.input_format.build(tok, tok("alpha beta gamma", add_special_tokens=False)["input_ids"], 12,
                                   is_query=True)["input_ids"]
    assert ids[-1] == tok.eos_token_id
    alone = tok.pad([{"input_ids": ids}], return_tensors="pt")
    padded = tok.pad([{"input_ids": ids}, {"input_ids": ids + [tok.eos_token_id] * 3}], return_tensors="pt")
    with torch.no_grad():
        one = model(query=dict(alone)).q_reps[0]
        two = model(query=dict(padded)).q_reps[0]
        hidden = model.encoder(**alone).last_hidden_state[0, -1]
    assert torch.allclose(one, two, atol=1e-5)
    assert torch.allclose(one, torch.nn.functional.normalize(hidden, dim=-1), atol=1e-5)


def test_train_driver_takes_current_tevatrons_flags(tmp_path):
    from tevatron_tele.driver.train import parse_args

    model_args, data_args, train_args = parse_args([
        "--model_name_or_path", "m", "--output_dir", str(tmp_path / "o"), "--pool", "p.jsonl",
        "--train_group_size", "16", "--query_max_len", "24", "--passage_max_len", "96", "--query_prefix", "query: ",
        "--passage_prefix", "passage: ", "--pooling", "last", "--lora", "--lora_r", "8", "--grad_cache",
        "--gc_q_chunk_size", "2", "--gc_p_chunk_size", "8", "--attn_implementation", "eager",
        "--early_stop_step", "20", "--negative_mixing", "weighted", "--source_weights", "ann=1", "--use_cpu"])
    assert (data_args.train_n_passages, data_args.q_max_len, data_args.p_max_len) == (16, 24, 96)
    assert data_args.query_prefix == "query: " and model_args.pooling == "last" and model_args.lora_r == 8
    assert train_args.grad_cache and (train_args.gc_q_chunk_size, train_args.gc_p_chunk_size) == (2, 8)
    assert model_args.attn_implementation == "eager" and train_args.early_stop_step == 20
    assert data_args.source_weight_map == {"ann": 1.0}
    # our names are the same settings
    _, data_args, _ = parse_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path / "o"),
                                  "--train_n_passages", "4", "--q_max_len", "16", "--p_max_len", "64"])
    assert (data_args.train_group_size, data_args.query_max_len, data_args.passage_max_len) == (4, 16, 64)
    with pytest.raises(ValueError, match="name the same setting"):
        parse_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path / "o"), "--train_n_passages", "4",
                    "--train_group_size", "8"])


def test_tokenizer_of_a_trained_model(tiny_model_dir):
    tok = load_tokenizer(SimpleNamespace(tokenizer_name=None, model_name_or_path=str(tiny_model_dir), cache_dir=None))
    assert tok.sep_token == "[SEP]" and math.isfinite(len(tok))


def test_masked_loss_leaves_other_positives_out(tiny_model_dir, tokenizer, tmp_path):
    """With --mask_batch_positives, a passage that is another judged positive of a query drops out of its softmax."""
    model_args = v2.TeleModelArguments(model_name_or_path=str(tiny_model_dir), pooling="cls", temperature=0.5)
    train_args = v2.TeleTrainingArguments(output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none")
    model = v2.build_model(model_args, v2.TeleDataArguments(mask_batch_positives=True), train_args)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    query, passage = _gc_inputs(tokenizer, n_queries=2, group=2)
    passage_keys = torch.tensor([10, 11, 12, 13])
    positive_keys = torch.tensor([[10, 12], [12, -1]])  # passage 12 (query 1's target) is also a positive of query 0
    masked = model(query=query, passage=passage, passage_keys=passage_keys, query_positive_keys=positive_keys)
    plain = model(query=query, passage=passage)
    assert not torch.isclose(masked.loss, plain.loss)
    scores = plain.scores / 0.5
    expected = (torch.nn.functional.cross_entropy(scores[0, [0, 1, 3]].unsqueeze(0), torch.tensor([0]))
                + torch.nn.functional.cross_entropy(scores[1].unsqueeze(0), torch.tensor([2]))) / 2
    assert torch.isclose(masked.loss, expected, atol=1e-6)


def test_library_use_v2_example_trains(tiny_model_dir, synthetic_dir, pool_files, tmp_path):
    """examples/library_use_v2.py (current Tevatron's training script on a streamed pool) trains and saves."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from transformers import AutoModel

    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "out"
    cmd = [sys.executable, str(repo / "examples" / "library_use_v2.py"), "--model_name_or_path", str(tiny_model_dir),
           "--output_dir", str(out), "--pool", str(pool_files / "pool.jsonl"), "--collection", str(synthetic_dir),
           "--token_cache_dir", str(tmp_path / "cache"), "--per_device_train_batch_size", "4",
           "--train_group_size", "3", "--max_steps", "2", "--report_to", "none", "--save_strategy", "no",
           "--attn_implementation", "sdpa", "--use_cpu"]
    result = subprocess.run(cmd, cwd=repo, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert AutoModel.from_pretrained(out) is not None
