"""ANCE-Tele's training loop: mine with model i-1, train episode i from the base model, evaluate, repeat.

Every step writes its output atomically and is skipped when that output exists, so a killed run
resumes at the first unfinished step; an episode with a DONE marker is never written again.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import AutoConfig

from ..arguments import check_mining_counts
from ..backends import get_backend, load_encoder, resolve_backend
from ..data.collections import check_split, collection_splits, load_collection
from ..data.pools import pool_stats_path
from ..data.run_folder import DONE_FILE, RunLayout
from ..data.token_cache import corpus_token_cache, query_token_cache
from ..data.trec import read_run
from ..evaluation.analysis import store_episode_scores
from ..evaluation.metrics import evaluate_collection, relevant_qrels, write_trec_qrels
from ..evaluation.report import analyze_and_report
from ..mining.tele import MiningConfig, mine_episode, mining_positives
from ..retrieval.bm25 import PyseriniUnavailableError, bm25_run_to_file, ensure_pyserini
from ..retrieval.embeddings import ids_path, is_complete, load_rows, npy_path, save_embeddings
from ..retrieval.encode import encode_to_file
from ..retrieval.scoring import EmbeddingScorer
from ..retrieval.search import search_to_file
from ..training.train import train
from ..utils import read_json, setup_logging, write_json
from .config import EpisodeArguments
from .selection import hold_out_dev, judge_run
from .workspace import RunFolder, training_kill_callbacks

logger = logging.getLogger(__name__)


def _device(args: EpisodeArguments) -> str:
    if args.device != "auto":
        return args.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolved(path) -> str:
    return str(Path(path).resolve())


def _source_paths(loaded) -> list[str]:
    """The files a loaded collection or corpus was read from (its `source_files` stamps' paths)."""
    return [stamp[0] for stamp in getattr(loaded, "source_files", ())]


class EpisodeRunner:
    """Runs (or resumes) the episodes of one run folder. `run()` returns the run folder."""

    def __init__(self, args: EpisodeArguments):
        self.args = args
        self.folder = RunFolder(args.output_dir)
        self.device = _device(args)
        # a collection without splits (DPR json, Tevatron jsonl) refuses --eval_split test, which would be its
        # training queries, with a message saying what to pass
        check_split(args.collection, args.train_split, flag="--train_split")
        check_split(args.collection, args.eval_split, flag="--eval_split")
        self.train_collection = load_collection(args.collection, split=args.train_split, passages=args.passages)
        # the files read, kept before a dev split is held out (the parts of a collection record none)
        self._train_files = (_source_paths(self.train_collection), _source_paths(self.train_collection.corpus))
        self.eval_collections = {}
        if args.eval_split:
            main = load_collection(args.collection, split=args.eval_split, passages=args.passages)
            main.corpus = self.train_collection.corpus  # one corpus in memory, encoded once per episode
            self.eval_collections["main"] = main
        # (path, split) each collection was read from, the key of its in-memory query token cache: names
        # (folder/split) repeat across folders
        self._sources = {id(self.train_collection): (_resolved(args.collection), args.train_split)}
        if "main" in self.eval_collections:
            self._sources[id(self.eval_collections["main"])] = (_resolved(args.collection), args.eval_split)
        # the dev split the kept episode is chosen on, evaluated after every episode like the test split
        if args.dev_split:
            check_split(args.collection, args.dev_split, flag="--dev_split")
            dev = load_collection(args.collection, split=args.dev_split, passages=args.passages)
            dev_source = (_resolved(args.collection), args.dev_split)
        elif args.dev_from_train:
            self.train_collection, dev = hold_out_dev(self.train_collection, args.dev_from_train, args.seed)
            dev_source = (_resolved(args.collection), f"{args.train_split}:dev-from-train")
            self._sources[id(self.train_collection)] = (_resolved(args.collection), f"{args.train_split}:rest")
        if args.dev_split or args.dev_from_train:
            dev.corpus = self.train_collection.corpus
            self.eval_collections["dev"] = dev
            self._sources[id(dev)] = dev_source
        for path in args.eval_collections:
            name = Path(path).name
            n = 2
            while name in self.eval_collections:  # two folders of one name are both evaluated
                name, n = f"{Path(path).name}-{n}", n + 1
            split = "test" if collection_splits(path) is not None else None  # a file without splits: all of it
            self.eval_collections[name] = load_collection(path, split=split)
            self._sources[id(self.eval_collections[name])] = (_resolved(path), "test")
        self.token_cache_dir = Path(args.token_cache_dir or self.folder.token_cache_dir)
        self._caches: dict[tuple, object] = {}
        self._mined_positives: dict[int, dict[str, list[str]]] = {}
        self._tokenizer = None

    # ---- shared pieces ----
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            _, self._tokenizer = load_encoder(self.args.model_name_or_path, "cpu", backend=self.args.backend)
        return self._tokenizer

    def _cache(self, collection, kind: str):
        key = (id(collection.corpus) if kind == "corpus" else self._sources.get(id(collection), id(collection)), kind)
        if key not in self._caches:
            if kind == "corpus":
                self._caches[key] = corpus_token_cache(collection, self.tokenizer, self.args.p_max_len,
                                                       self.token_cache_dir)
            else:
                self._caches[key] = query_token_cache(collection, self.tokenizer, self.args.q_max_len,
                                                      self.token_cache_dir)
        return self._caches[key]

    def model_dir(self, i: int) -> Path:
        return Path(self.args.model_name_or_path) if i == 0 else self.folder.model(i)

    def _input_options(self) -> dict:
        """Current Tevatron's input options, so every episode (the base model too) encodes as it trains."""
        a = self.args
        return {"query_prefix": a.query_prefix, "passage_prefix": a.passage_prefix,
                "append_eos_token": a.append_eos_token}

    # ---- steps ----
    def _encode(self, i: int, collection, kind: str, name: str, model_state: dict) -> Path:
        """Encode a collection's corpus or queries with episode i's model (loaded once per episode)."""
        prefix = self.folder.embeddings(i, name)

        def work():
            if "model" not in model_state:
                model_state["model"], model_state["tokenizer"] = load_encoder(
                    self.model_dir(i), self.device, pooling=self.args.pooling, normalize=self.args.normalize,
                    backend=self.args.backend, input_options=self._input_options())
            is_query = kind == "queries"
            return encode_to_file(self._cache(collection, kind), prefix, is_query=is_query,
                                  max_len=self.args.q_max_len if is_query else self.args.p_max_len,
                                  batch_size=self.args.encode_batch_size, dtype=self.args.embedding_dtype,
                                  amp=self.args.encode_amp, device=self.device, model=model_state["model"],
                                  tokenizer=model_state["tokenizer"], progress=self.args.progress)

        self.folder.step(f"episode-{i}/encode-{name}", prefix, work, done=lambda: is_complete(prefix),
                         files=lambda: [npy_path(prefix), ids_path(prefix)])
        return prefix

    def _search(self, i: int, query_prefix: Path, corpus_prefix: Path, name: str, depth: int) -> Path:
        out = self.folder.ranking(i, name)
        self.folder.step(f"episode-{i}/search-{name}", out, lambda: search_to_file(
            query_prefix, corpus_prefix, out, depth, backend=self.args.search_backend, device=self.device,
            tag=f"episode-{i}", progress=self.args.progress))
        return out

    def _mining_positives(self, i: int) -> dict[str, list[str]]:
        """The positives pool i+1 gives each training query: the judged ones and, for a QA collection, the answer
        passages `mine_episode` promotes from episode i's rankings."""
        if i not in self._mined_positives:  # the scores step and the lookahead step both ask; read the runs once
            collection, sources = self.train_collection, self.args.sources()
            self._mined_positives[i] = (
                {q: collection.positives(q) for q in collection.queries} if not collection.answers else
                mining_positives(collection, depth=self.args.depth,
                                 query_run=self.folder.ranking(i, "queries") if "ann" in sources else None,
                                 bm25_run=self._bm25_run(collection, "train") if "bm25" in sources else None))
        return self._mined_positives[i]

    def _positive_embeddings(self, i: int, corpus_prefix: Path) -> Path:
        """Lookahead queries: the passage-encoder vectors of the positives pool i+1 will hold (corpus rows; a QA
        query's promoted answer passage too), gathered shard by shard from memory-mapped files so the corpus is
        never loaded whole."""
        prefix = self.folder.embeddings(i, "positives")

        def work():
            wanted = {d for ps in self._mining_positives(i).values() for d in ps}
            save_embeddings(prefix, *load_rows(corpus_prefix, wanted))

        self.folder.step(f"episode-{i}/positives", prefix, work, done=lambda: is_complete(prefix),
                         files=lambda: [npy_path(prefix), ids_path(prefix)])
        return prefix

    def _bm25_run(self, collection, name: str) -> Path:
        out = self.folder.bm25_run(name)
        depth = max(self.args.depth, self.args.eval_depth)
        self.folder.step(f"bm25/{name}", out, lambda: bm25_run_to_file(
            collection, self.folder.bm25_index, out, k=depth))
        return out

    def _evaluate(self, i: int, corpus_prefixes: dict[str, Path], model_state: dict) -> None:
        if not self.eval_collections:
            return
        # Each evaluated split's qrels as TREC qrels beside the runs, RUN/qrels/<collection>-<split>.qrels (written
        # once, atomically): the file Pyserini's trec_eval reads, e.g. `python -m pyserini.eval.trec_eval -c -m
        # ndcg_cut.10 RUN/qrels/scifact-test.qrels RUN/episode-1/rankings/test.trec` gives eval.json's nDCG@10.
        labels: set[str] = set()
        for name, collection in self.eval_collections.items():
            if name in ("main", "dev"):
                label = Path(self.args.collection).name
                split = self.args.eval_split if name == "main" else (self.args.dev_split or "dev-from-train")
            else:
                label, split = name, "test"
            for suffix in (".jsonl", ".json", ".tsv"):
                label = label.removesuffix(suffix)
            base = label = f"{label}-{split}"
            n = 2
            while label in labels:  # an extra collection of the main one's name
                label, n = f"{base}-{n}", n + 1
            labels.add(label)
            qrels_path = self.folder.qrels(label)
            if not qrels_path.exists() and relevant_qrels(collection.qrels or {}):
                write_trec_qrels(qrels_path, collection.qrels)
        out = self.folder.eval(i)
        if out.exists():
            return
        results = {}
        for name, collection in self.eval_collections.items():
            corpus_prefix = corpus_prefixes.get(name)
            if corpus_prefix is None:
                corpus_prefix = corpus_prefixes[name] = self._encode(i, collection, "corpus", f"corpus-{name}",
                                                                     model_state)
            q_prefix = self._encode(i, collection, "queries", f"queries-{name}", model_state)
            ranking = {"main": "test", "dev": "dev"}.get(name, f"test-{name}")
            run_path = self._search(i, q_prefix, corpus_prefix, ranking, self.args.eval_depth)
            results[name if name not in ("main", "dev") else collection.name] = evaluate_collection(
                read_run(run_path), collection)
        write_json(out, results)
        main = next(iter(results.values()))
        logger.info("episode %d: %s", i, {k: round(v, 4) for k, v in main.items() if isinstance(v, float)})

    def _mine_inputs(self, i: int) -> Path:
        """Episode i's model's rankings of the training queries (and of their positives, for lookahead)."""
        model_state: dict = {}
        corpus = self._encode(i, self.train_collection, "corpus", "corpus", model_state)
        queries = self._encode(i, self.train_collection, "queries", "train-queries", model_state)
        self._search(i, queries, corpus, "queries", self.args.depth)
        if i >= 1:
            self._store_scores(i, queries, corpus)
        if "lookahead" in self.args.sources() and i < self.args.num_episodes:
            self._search(i, self._positive_embeddings(i, corpus), corpus, "positives", self.args.depth)
        self._evaluate(i, {"main": corpus, "dev": corpus}, model_state)
        return corpus

    def _store_scores(self, i: int, query_prefix: Path, corpus_prefix: Path) -> Path:
        """S_i(q, d) of pools 1..i and of the analysis probe, from the embeddings just made, so that the
        forgetting analysis never encodes anything again. Streamed a query at a time: pools and the base
        ranking are looked up by query, the corpus vectors memory-mapped."""
        out = self.folder.scores(i)

        def work():
            base_ranking = self.folder.ranking(0, "queries")
            # queries of pool i+1 that no earlier pool holds keep their mining positives
            written = store_episode_scores(out, EmbeddingScorer(query_prefix, corpus_prefix),
                                           [self.folder.pool(j) for j in range(1, i + 1)], self._mining_positives(i),
                                           base_ranking if base_ranking.exists() else None,
                                           self.args.analysis_probe_k)
            logger.info("episode %d: stored %d scores -> %s", i, written, out)

        self.folder.step(f"episode-{i}/scores", out, work)
        return out

    def _filter_needs_scores(self) -> bool:
        a = self.args
        return a.max_negative_ratio is not None or a.negative_margin is not None or a.train_positives != "all"

    def _mining_scores(self, prev: int):
        """The mining model's S(q, d) for pool prev+1, or None when no option needs them.

        The positive-aware filter scores every candidate (any source) from episode prev's embeddings of the
        training queries and the corpus. Pool prev+1 is mined before `_finish_episode(prev)` removes the corpus
        embeddings, so they are there; only when they are not (episode 0 copied from --base_cache_dir, which
        holds no embeddings) are they encoded again, and removed after mining unless --keep_embeddings.
        Momentum replay alone reads the stored RUN/episode-<prev>/scores.npz (S_prev of pools 1..prev and the
        positives, which covers the momentum candidates: pool prev's negatives).
        """
        if self._filter_needs_scores():
            queries = self.folder.embeddings(prev, "train-queries")
            corpus = self.folder.embeddings(prev, "corpus")
            if not (is_complete(queries) and is_complete(corpus)):
                model_state: dict = {}
                corpus = self._encode(prev, self.train_collection, "corpus", "corpus", model_state)
                queries = self._encode(prev, self.train_collection, "queries", "train-queries", model_state)
            return EmbeddingScorer(queries, corpus)
        if self.args.momentum != "all" and prev >= 1:
            return self.folder.scores(prev)
        return None

    def _mine_pool(self, i: int) -> Path:
        out = self.folder.pool(i)
        sources = self.args.sources()
        prev = i - 1
        a = self.args

        def work():
            mine_episode(
                self.train_collection, out,
                query_run=self.folder.ranking(prev, "queries") if "ann" in sources else None,
                positive_run=self.folder.ranking(prev, "positives") if "lookahead" in sources else None,
                previous_pool=self.folder.pool(prev) if "momentum" in sources and prev >= 1 else None,
                bm25_run=self._bm25_run(self.train_collection, "train") if "bm25" in sources else None,
                config=MiningConfig(depth=a.depth, sample=a.sample or None, seed=a.seed + i,
                                    all_positives=a.lookahead_all_positives, max_negative_ratio=a.max_negative_ratio,
                                    negative_margin=a.negative_margin, skip_top=a.skip_top,
                                    filter_positive=a.filter_positive, momentum=a.momentum,
                                    train_positives=a.train_positives),
                scores=self._mining_scores(prev))
            if self._filter_needs_scores() and self.folder.is_done(prev):
                self._drop_corpus_embeddings(prev)  # encoded again just now for the filter's scores

        # complete when the pool and its stats are both there (a pool left without stats is mined again)
        self.folder.step(f"episode-{i}/mine", out, work, done=lambda: out.exists() and pool_stats_path(out).exists(),
                         files=lambda: [out, pool_stats_path(out)])
        return out

    def _train(self, i: int) -> Path:
        out = self.folder.model(i)
        self.folder.step(f"episode-{i}/train", out, lambda: self._train_work(i))
        return out

    def _train_settings(self, i: int) -> tuple[dict, dict, dict]:
        """Model, data and training settings of episode i (Tevatron/HF flag names)."""
        a = self.args
        last = i == a.num_episodes
        start = self.model_dir(i - 1) if a.continue_training else Path(a.model_name_or_path)
        model_kw = dict(model_name_or_path=str(start), pooling=a.pooling, normalize=a.normalize,
                        temperature=a.temperature, untie_encoder=a.untie_encoder)
        data_kw = dict(pool=str(self.folder.pool(i)), collection=a.collection, split=a.train_split,
                       token_cache_dir=str(self.token_cache_dir), train_n_passages=a.n_passages_by_episode()[i - 1],
                       q_max_len=a.q_max_len, p_max_len=a.p_max_len, negative_mixing=a.negative_mixing,
                       source_weights=a.source_weights, mask_batch_positives=a.mask_batch_positives)
        if a.passages:
            data_kw["passages"] = a.passages
        train_kw = dict(output_dir=str(self.folder.model(i)), per_device_train_batch_size=a.per_device_train_batch_size,
                        learning_rate=a.learning_rate, num_train_epochs=a.num_train_epochs,
                        warmup_ratio=a.warmup_ratio, early_stop_step=0 if last else a.refresh_steps, seed=a.seed,
                        data_seed=a.seed, bf16=a.bf16, fp16=a.fp16, logging_steps=a.logging_steps,
                        save_strategy="no", report_to="none", dataloader_num_workers=0,
                        # full batches only, in both backends (Tevatron 0.1.0's trainer always drops the last one)
                        dataloader_drop_last=True,
                        disable_tqdm=not a.progress, use_cpu=self.device == "cpu")
        if a.train_nproc > 1:
            train_kw["negatives_x_device"] = True
        train_kw["backend"] = a.backend
        # current Tevatron's options, only when set (Tevatron 0.1.0's dataclasses do not have them)
        v2_model = dict(attn_implementation=a.attn_implementation, lora=a.lora,
                        lora_r=a.lora_r if a.lora else None, lora_target_modules=a.lora_target_modules)
        # Tevatron 0.1.0 always pads to the maximum length and has no such flag
        v2_data = {**self._input_options(), "pad_to_max_length": a.pad_to_max_length
                   and resolve_backend(a.backend) == "v2"}
        v2_train = dict(grad_cache=a.grad_cache, gc_q_chunk_size=a.gc_q_chunk_size if a.grad_cache else None,
                        gc_p_chunk_size=a.gc_p_chunk_size if a.grad_cache else None)
        for kw, extra in ((model_kw, v2_model), (data_kw, v2_data), (train_kw, v2_train)):
            kw.update({k: v for k, v in extra.items() if v})
        return model_kw, data_kw, train_kw

    def _train_work(self, i: int) -> Path:
        shutil.rmtree(self.folder.episode(i) / "model.partial", ignore_errors=True)  # a killed run's leftovers
        model_kw, data_kw, train_kw = self._train_settings(i)
        if self.args.train_nproc > 1:
            return self._train_torchrun(i, {**model_kw, **data_kw, **train_kw})
        backend = get_backend(self.args.backend)
        return train(backend.TeleModelArguments(**model_kw), backend.TeleDataArguments(**data_kw),
                     backend.TeleTrainingArguments(**train_kw), callbacks=training_kill_callbacks(f"episode-{i}/train"))

    def _train_torchrun(self, i: int, settings: dict) -> Path:
        """Train episode i in `train_nproc` processes (torchrun), negatives shared across devices."""
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={self.args.train_nproc}", "-m", "tevatron_tele.driver.train"]
        for key, value in settings.items():
            cmd += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
        logger.info("episode %d: %s", i, " ".join(cmd))
        subprocess.run(cmd, check=True)
        return self.folder.model(i)

    def _finish_episode(self, i: int) -> None:
        if self._filter_needs_scores() and i < self.args.num_episodes:
            # the positive-aware filter scores pool i+1's candidates with this episode's corpus embeddings: mine
            # it now, before they are removed (the loop then finds it done)
            self._mine_pool(i + 1)
        self._drop_corpus_embeddings(i)
        write_json(self.folder.done(i), {"finished": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def _drop_corpus_embeddings(self, i: int) -> None:
        """Remove episode i's corpus embeddings (the bulk of a run's disk; rebuilt cheaply), unless kept."""
        if not self.args.keep_embeddings:
            for p in self.folder.embeddings(i).glob("corpus*"):
                p.unlink()

    def _episode_zero(self) -> None:
        """The base model's rankings and evaluation, shared between runs through --base_cache_dir."""
        if self.folder.is_done(0):
            return
        shared = self._base_cache()
        if shared is not None and (shared / DONE_FILE).exists():  # a copy of episode 0's folder
            logger.info("episode 0: copying the base model's rankings from %s", shared)
            shutil.copytree(shared, self.folder.episode(0), dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("embeddings"))
            if "lookahead" in self.args.sources() and not self.folder.ranking(0, "positives").exists():
                self._mine_inputs(0)
                self._finish_episode(0)
            return
        self._mine_inputs(0)
        self._finish_episode(0)
        if shared is not None and not shared.exists():
            shutil.copytree(self.folder.episode(0), shared, ignore=shutil.ignore_patterns("embeddings"))

    def _base_cache(self) -> Path | None:
        if not self.args.base_cache_dir:
            return None
        a = self.args
        key = [str(Path(a.model_name_or_path).resolve()), str(Path(a.collection).resolve()),
               a.train_split, a.eval_split, sorted(a.eval_collections), a.q_max_len, a.p_max_len,
               a.pooling, a.normalize, a.depth, a.eval_depth, a.embedding_dtype]
        if any(self._input_options().values()):
            key.append(self._input_options())
        # more options that change the base model's embeddings or its corpus, only when set (so the keys of
        # caches made without them stay what they were)
        extra = {"encode_amp": a.encode_amp, "passages": _resolved(a.passages) if a.passages else None,
                 "dev_split": a.dev_split, "dev_from_train": a.dev_from_train}
        if any(extra.values()):
            key.append({k: v for k, v in extra.items() if v})
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return Path(a.base_cache_dir) / digest

    def data_report(self) -> dict:
        """What was read of each collection, by role: its counts and the qrels lines dropped as naming an unknown
        query or document (Collection.stats), written into the manifest so that a drop is seen in the run folder.

        Returns:
            {"train": stats, "eval:<name>": stats, ...}.
        """
        report = {"train": dict(self.train_collection.stats or {})}
        for name, collection in self.eval_collections.items():
            report[f"eval:{name}"] = dict(collection.stats or {})
        return report

    def data_files(self) -> dict[str, list[str]]:
        """The files the collections were read from, by role, for the manifest's fingerprints (`RunFolder.open`).

        Returns:
            {"collection": the training collection's query and qrels files (every split read), "corpus": its
            corpus files, "eval_collections/<name>": each further evaluation collection's files}.
        """
        splits, corpus = self._train_files
        out = {"collection": sorted({*splits, *(f for name in ("main", "dev") if name in self.eval_collections
                                               for f in _source_paths(self.eval_collections[name]))}),
               "corpus": corpus}
        for name, collection in self.eval_collections.items():
            if name not in ("main", "dev"):
                out[f"eval_collections/{name}"] = [*_source_paths(collection), *_source_paths(collection.corpus)]
        return out

    def check_settings(self) -> None:
        """Every check a later step would make of the settings and the model, made before the run folder is
        written: a refused flag then leaves no manifest, and the corrected command works in the same folder.

        The training arguments of episode 1 are built as training builds them (mixing, source weights, passages
        per query, pooling, precision), the mining counts checked, and the model folder's config read.

        Raises:
            ValueError: a setting a step would refuse.
            FileNotFoundError: the model is neither a folder nor a model in the Hugging Face cache.
        """
        a = self.args
        check_mining_counts(a.depth, a.sample)
        try:
            AutoConfig.from_pretrained(a.model_name_or_path)
        except OSError as e:
            if e.errno is not None:
                raise
            raise FileNotFoundError(errno.ENOENT, "no model here (neither a model folder nor a model in the Hugging "
                                                  "Face cache)", a.model_name_or_path) from None
        backend = get_backend(a.backend)
        model_kw, data_kw, train_kw = self._train_settings(1)
        backend.TeleModelArguments(**model_kw)
        backend.TeleDataArguments(**data_kw)
        backend.TeleTrainingArguments(**train_kw)

    def run(self) -> Path:
        setup_logging()
        self.check_settings()
        self.folder.open(self.args, data=self.data_report(), collections=self.data_files())
        logger.info("run %s: %d episodes, negatives %s (%s), device %s", self.folder.root, self.args.num_episodes,
                    self.args.negatives, ",".join(sorted(self.args.sources())), self.device)
        self._episode_zero()
        for i in range(1, self.args.num_episodes + 1):
            if self.folder.is_done(i):
                logger.info("episode %d is complete; skipping", i)
                continue
            logger.info("episode %d: mining", i)
            self._mine_pool(i)
            logger.info("episode %d: training", i)
            self._train(i)
            logger.info("episode %d: encoding and evaluating", i)
            self._mine_inputs(i)
            self._finish_episode(i)
        self.judge()
        if self.args.analyze:
            self.analyze()
        return self.folder.root

    def _bm25_baseline(self) -> Path | None:
        """BM25's run of the test queries (computed once, RUN/bm25/test.trec), unless --baselines none, or auto
        without Pyserini."""
        if self.args.baselines == "none" or "main" not in self.eval_collections:
            return None
        if self.args.baselines == "auto":
            try:
                ensure_pyserini()
            except PyseriniUnavailableError as e:
                logger.info("no BM25 baseline (--baselines auto): %s", e)
                return None
        return self._bm25_run(self.eval_collections["main"], "test")

    def judge(self) -> dict | None:
        """Choose the episode to keep on the dev split and compare it with the start and BM25 (RUN/best.json,
        RUN/best -> episode-k); None without an evaluated test split."""
        if "main" not in self.eval_collections:
            return None
        dev = self.eval_collections.get("dev")
        return judge_run(self.folder, self.eval_collections["main"].qrels, self.args.selection_metric,
                         dev.name if dev is not None else None, self._bm25_baseline(), seed=self.args.seed,
                         dev_qrels=dev.qrels if dev is not None else None, rule=self.args.selection_rule)

    def analyze(self) -> Path | None:
        """The forgetting and convergence report of this run (RUN/report/)."""
        out = self.folder.report_dir
        if (out / "analysis.json").exists():
            return out
        started = time.perf_counter()
        analyze_and_report([self.folder.root], out, max_queries=self.args.analysis_max_queries,
                           probe_k=self.args.analysis_probe_k, cache_dir=self.token_cache_dir, device=self.device,
                           progress=self.args.progress)
        self.folder.record("analyze", time.perf_counter() - started)
        return out


def run_episodes(args: EpisodeArguments) -> Path:
    """Run (or resume) ANCE-Tele episodes as configured.

    Args:
        args: the run's settings.

    Returns:
        The run folder.
    """
    return EpisodeRunner(args).run()


def episode_metrics(run_dir: str | Path) -> dict[int, dict]:
    """eval.json of every finished episode of a run folder, keyed by episode."""
    layout = RunLayout(run_dir)
    return {i: read_json(layout.eval(i)) for i in layout.episodes() if layout.eval(i).exists()}
