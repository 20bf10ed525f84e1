"""TeleDenseModel: pooling, normalisation, temperature, in-batch masking, save / load round trips."""
from __future__ import annotations

import json

import pytest
import torch
from tevatron.arguments import DataArguments, ModelArguments
from tevatron.modeling import DenseModelForInference
from transformers import AutoModel, AutoTokenizer

from tevatron_tele.backends.tevatron_v1.arguments import TeleDataArguments, TeleModelArguments
from tevatron_tele.backends.tevatron_v1.compat import CompatTrainingArguments
from tevatron_tele.backends.tevatron_v1.modeling import (
    TeleDenseModel,
    TeleDenseModelForInference,
    load_encoder,
    pool_hidden,
    save_encoders,
)
from tevatron_tele.model_config import TELE_CONFIG, batch_positive_mask, read_tele_config


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _args(tmp_path, batch=2):
    return CompatTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=batch, report_to="none")


def _model(tiny_model_dir, tmp_path, n_passages=2, mask=False, **model_kw) -> TeleDenseModel:
    model_args = TeleModelArguments(model_name_or_path=str(tiny_model_dir), **model_kw)
    data_args = TeleDataArguments(train_n_passages=n_passages, mask_batch_positives=mask)
    return TeleDenseModel.build(model_args, data_args, _args(tmp_path))


def _batch(tokenizer, texts, max_len=12):
    return dict(tokenizer(texts, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt"))


QUERIES = ["alpha beta gamma", "delta epsilon"]
PASSAGES = ["alpha beta gamma delta", "zeta eta theta", "delta epsilon zeta", "iota kappa alpha beta"]


def test_mean_pooling_is_masked_mean_and_differs_from_cls(tiny_model_dir, tokenizer, tmp_path):
    cls_model = _model(tiny_model_dir, tmp_path).eval()
    mean_model = _model(tiny_model_dir, tmp_path, pooling="mean").eval()
    with torch.no_grad():
        hidden, reps = mean_model.encode_passage(_batch(tokenizer, PASSAGES))
        _, cls_reps = cls_model.encode_passage(_batch(tokenizer, PASSAGES))
        _, short = mean_model.encode_passage(_batch(tokenizer, PASSAGES, max_len=8))
    mask = _batch(tokenizer, PASSAGES)["attention_mask"]
    manual = torch.stack([hidden[i, mask[i].bool()].mean(0) for i in range(len(PASSAGES))])
    assert torch.allclose(reps, manual, atol=1e-5)
    assert torch.allclose(cls_reps, hidden[:, 0], atol=1e-5)
    assert not torch.allclose(reps, cls_reps, atol=1e-3)
    assert torch.allclose(reps, short, atol=1e-5)  # padding does not move a mean-pooled vector


def test_pool_hidden_rejects_unknown_pooling():
    with pytest.raises(ValueError, match="max"):
        pool_hidden(torch.zeros(1, 2, 3), None, "max")


def test_normalize_gives_unit_norms(tiny_model_dir, tokenizer, tmp_path):
    model = _model(tiny_model_dir, tmp_path, pooling="mean", normalize=True).eval()
    _, q = model.encode_query(_batch(tokenizer, QUERIES))
    _, p = model.encode_passage(_batch(tokenizer, PASSAGES))
    assert torch.allclose(q.norm(dim=-1), torch.ones(len(QUERIES)), atol=1e-5)
    assert torch.allclose(p.norm(dim=-1), torch.ones(len(PASSAGES)), atol=1e-5)
    raw = _model(tiny_model_dir, tmp_path, pooling="mean").eval()
    _, p_raw = raw.encode_passage(_batch(tokenizer, PASSAGES))
    assert not torch.allclose(p_raw.norm(dim=-1), torch.ones(len(PASSAGES)), atol=1e-2)


def test_temperature_scales_the_loss_logits(tiny_model_dir, tokenizer, tmp_path):
    base = _model(tiny_model_dir, tmp_path, normalize=True).train()
    hot = _model(tiny_model_dir, tmp_path, normalize=True, temperature=0.05).train()
    hot.load_state_dict(base.state_dict())
    q, p = _batch(tokenizer, QUERIES), _batch(tokenizer, PASSAGES)
    torch.manual_seed(0)
    out_base = base(query=q, passage=p)
    torch.manual_seed(0)
    out_hot = hot(query=q, passage=p)
    assert torch.allclose(out_hot.scores, out_base.scores / 0.05, atol=1e-4)
    expected = torch.nn.functional.cross_entropy(out_base.scores / 0.05, torch.tensor([0, 2]))
    assert out_hot.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out_hot.loss.item() != pytest.approx(out_base.loss.item(), rel=1e-3)


def test_batch_positive_mask():
    # query 0 has positives {10, 30}; query 1 has {20}; passages: q0 -> [10, 11], q1 -> [20, 30]
    positives = torch.tensor([[10, 30], [20, -1]])
    passages = torch.tensor([10, 11, 20, 30])
    mask = batch_positive_mask(positives, passages, torch.tensor([0, 2]))
    assert mask.tolist() == [[False, False, False, True], [False, False, False, False]]


def test_masked_forward_leaves_out_other_positives(tiny_model_dir, tokenizer, tmp_path):
    model = _model(tiny_model_dir, tmp_path, mask=True).train()
    assert model.mask_batch_positives
    q, p = _batch(tokenizer, QUERIES), _batch(tokenizer, PASSAGES)
    keys = {"passage_keys": torch.tensor([10, 11, 20, 30]), "query_positive_keys": torch.tensor([[10, 30], [20, -1]])}
    torch.manual_seed(0)
    masked = model(query=q, passage=p, **keys)
    torch.manual_seed(0)
    plain = model(query=q, passage=p)
    logits = plain.scores.clone()
    logits[0, 3] = float("-inf")
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2]))
    assert masked.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert masked.loss.item() < plain.loss.item()


@pytest.mark.parametrize("untie, pooler", [(False, False), (True, False), (False, True), (True, True)])
def test_save_and_load_round_trip(tiny_model_dir, tokenizer, tmp_path, untie, pooler):
    hidden = AutoModel.from_pretrained(tiny_model_dir).config.hidden_size
    model = _model(tiny_model_dir, tmp_path, pooling="mean", normalize=True, temperature=0.05, untie_encoder=untie,
                   add_pooler=pooler, projection_in_dim=hidden, projection_out_dim=hidden).eval()
    out = tmp_path / "saved"
    save_encoders(model, out, tokenizer=tokenizer)

    config = read_tele_config(out)
    assert config == {"pooling": "mean", "normalize": True, "temperature": 0.05, "untie_encoder": untie,
                      "add_pooler": pooler, "backend": "v1"}
    assert json.loads((out / TELE_CONFIG).read_text())["pooling"] == "mean"

    loaded, loaded_tok = load_encoder(out)
    assert isinstance(loaded, TeleDenseModelForInference)
    assert (loaded.pooling, loaded.normalize, loaded.temperature) == ("mean", True, 0.05)
    assert (loaded.lm_q is not loaded.lm_p) == untie and (loaded.pooler is not None) == pooler
    q, p = _batch(loaded_tok, QUERIES), _batch(loaded_tok, PASSAGES)
    with torch.no_grad():
        assert torch.allclose(loaded.encode_query(q)[1], model.encode_query(q)[1], atol=1e-5)
        assert torch.allclose(loaded.encode_passage(p)[1], model.encode_passage(p)[1], atol=1e-5)

    # plain HF / Tevatron loaders read the same directory
    sub = ["query_model", "passage_model"] if untie else ["."]
    for name in sub:
        AutoModel.from_pretrained(out / name)
        AutoTokenizer.from_pretrained(out / name)
    tevatron_model = DenseModelForInference.build(str(out))
    assert (tevatron_model.lm_q is not tevatron_model.lm_p) == untie


def test_load_encoder_defaults_for_plain_models(tiny_model_dir):
    model, tok = load_encoder(tiny_model_dir)
    assert (model.pooling, model.normalize) == ("cls", False)
    model, _ = load_encoder(tiny_model_dir, pooling="mean", normalize=True)
    assert (model.pooling, model.normalize) == ("mean", True)
    with pytest.raises(FileNotFoundError):
        load_encoder(tiny_model_dir / "missing")


def test_bad_tele_config_names_file_and_field(tiny_model_dir, tmp_path):
    import shutil

    out = tmp_path / "model"
    shutil.copytree(tiny_model_dir, out)
    (out / TELE_CONFIG).write_text(json.dumps({"pooling": "max"}))
    with pytest.raises(ValueError, match=r"tele_config.json: field 'pooling'"):
        load_encoder(out)


def test_tevatron_arguments_still_build(tiny_model_dir, tmp_path):
    """Plain Tevatron argument objects give Tevatron's behaviour: CLS, dot product, temperature 1."""
    model = TeleDenseModel.build(ModelArguments(model_name_or_path=str(tiny_model_dir)), DataArguments(),
                                 _args(tmp_path))
    assert (model.pooling, model.normalize, model.temperature, model.mask_batch_positives) == ("cls", False, 1.0,
                                                                                               False)


# --------------------------------------------------------------------------------------------------
# Real model: zero-shot MiniLM on SciFact test (passages cut at 128 tokens)
# --------------------------------------------------------------------------------------------------


def _scifact_ndcg(model, tokenizer, scifact_dir) -> tuple[float, float]:
    """nDCG@10 of the model's own reps, and of CLS + dot from the same forward pass (hidden[:, 0])."""
    import ir_measures

    from tevatron_tele.data.collections import load_collection

    collection = load_collection(scifact_dir, split="test")
    corpus = collection.corpus

    def encode(texts, is_query, max_len):
        reps, cls = [], []
        for start in range(0, len(texts), 64):
            batch = tokenizer(texts[start:start + 64], padding=True, truncation=True, max_length=max_len,
                              return_tensors="pt")
            hidden, rep = (model.encode_query if is_query else model.encode_passage)(dict(batch))
            reps.append(rep)
            cls.append(hidden[:, 0])
        return torch.cat(reps), torch.cat(cls)

    qids = sorted(collection.queries)
    q, q_cls = encode([collection.queries[i] for i in qids], True, 64)
    p, p_cls = encode([corpus.passage_text(i, tokenizer.sep_token) for i in range(len(corpus))], False, 128)
    assert torch.allclose(p.norm(dim=-1), torch.ones(len(p)), atol=1e-4)

    def ndcg(q, p):
        scores, idx = (q @ p.T).topk(100, dim=1)
        run = {qid: {corpus.ids[j]: float(s) for j, s in zip(idx[i].tolist(), scores[i].tolist())}
               for i, qid in enumerate(qids)}
        measure = ir_measures.nDCG @ 10
        return ir_measures.calc_aggregate([measure], collection.qrels, run)[measure]

    return ndcg(q, p), ndcg(q_cls, p_cls)


@pytest.mark.slow
def test_minilm_zero_shot_scifact_mean_cosine_beats_cls_dot(minilm_dir, scifact_dir):
    torch.set_num_threads(2)
    model, tokenizer = load_encoder(minilm_dir, pooling="mean", normalize=True)
    mean_cos, cls_dot = _scifact_ndcg(model, tokenizer, scifact_dir)
    assert mean_cos == pytest.approx(0.624, abs=0.01)
    assert cls_dot == pytest.approx(0.507, abs=0.02)
    assert cls_dot < mean_cos - 0.08
