"""The collections of one run, as the episode runner reads them (`load_run_collections`), and their token caches, made
once per run (`TokenCaches`)."""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import load_encoder
from ..data.collections import Collection, check_split, collection_splits, load_collection
from ..data.token_cache import TokenCache, corpus_token_cache, query_token_cache
from .config import EpisodeArguments

# the evaluated splits of the training collection; every other name is one of --eval_collections
OWN_SPLITS = ("main", "dev")


def _resolved(path) -> str:
    return str(Path(path).resolve())


def _source_paths(loaded) -> list[str]:
    """The files a loaded collection or corpus was read from (its `source_files` stamps' paths)."""
    return [stamp[0] for stamp in getattr(loaded, "source_files", ())]


def hold_out_dev(collection: Collection, n: int, seed: int) -> tuple[Collection, Collection]:
    """Split `n` judged training queries off as a dev collection.

    Args:
        collection: the training collection.
        n: dev queries (chosen with `seed` among queries with a positive).
        seed: sampling seed.

    Returns:
        (training collection without them, dev collection of them, named '<collection>/dev-from-train').
    """
    judged = sorted(q for q in collection.queries if collection.positives(q))
    if not 0 < n < len(judged):
        raise ValueError(f"--dev_from_train {n}: the training split has {len(judged)} judged queries; hold out "
                         f"between 1 and {len(judged) - 1}")
    dev_ids = set(random.Random(seed).sample(judged, n))

    def part(keep) -> dict:
        return {"queries": {q: t for q, t in collection.queries.items() if keep(q)},
                "qrels": {q: r for q, r in collection.qrels.items() if keep(q)},
                "answers": ({q: a for q, a in collection.answers.items() if keep(q)}
                            if collection.answers else collection.answers)}

    train = dataclasses.replace(collection, **part(lambda q: q not in dev_ids))
    dev = dataclasses.replace(collection, name=f"{collection.name.split('/')[0]}/dev-from-train",
                              **part(lambda q: q in dev_ids))
    return train, dev


@dataclass
class RunCollections:
    """The collections a run trains and evaluates on.

    Args:
        train: the training split (without the queries held out as dev, if any).
        evals: {name: collection} evaluated after every episode: 'main' (--eval_split), 'dev', then each of
            --eval_collections by its folder's name; the training collection's splits share its corpus.
        sources: {id(collection): (resolved path, split)}, key of its query token cache (names repeat across folders).
        train_files: the files the training queries, qrels and corpus were read from (kept before a dev split is held
            out: the parts of a collection record none).
    """

    train: Collection
    evals: dict[str, Collection] = field(default_factory=dict)
    sources: dict[int, tuple[str, str]] = field(default_factory=dict)
    train_files: tuple[list[str], list[str]] = ([], [])

    def add(self, name: str, collection: Collection, source: tuple[str, str]) -> None:
        """Evaluate `collection` as `name`; `source` keys its query token cache."""
        self.evals[name] = collection
        self.sources[id(collection)] = source

    def report(self) -> dict:
        """What was read of each collection, by role: its counts and the qrels lines dropped as naming an unknown query
        or document (Collection.stats), written into the manifest so that a drop is seen in the run folder.

        Returns:
            {"train": stats, "eval:<name>": stats, ...}.
        """
        report = {"train": dict(self.train.stats or {})}
        for name, collection in self.evals.items():
            report[f"eval:{name}"] = dict(collection.stats or {})
        return report

    def files(self) -> dict[str, list[str]]:
        """The files the collections were read from, by role, for the manifest's fingerprints (`RunFolder.open`).

        Returns:
            {"collection": the training collection's query and qrels files (every split read), "corpus": its corpus
            files, "eval_collections/<name>": each further evaluation collection's files}.
        """
        splits, corpus = self.train_files
        out = {"collection": sorted({*splits, *(f for name in OWN_SPLITS if name in self.evals
                                               for f in _source_paths(self.evals[name]))}),
               "corpus": corpus}
        for name, collection in self.evals.items():
            if name not in OWN_SPLITS:
                out[f"eval_collections/{name}"] = [*_source_paths(collection), *_source_paths(collection.corpus)]
        return out

    def qrels_labels(self, args: EpisodeArguments) -> dict[str, str]:
        """The label of each evaluated split's TREC qrels file (`RunLayout.qrels`): '<collection>-<split>'.

        Args:
            args: the run's settings (the collection's path and the evaluated splits).

        Returns:
            {name in `evals`: label}, the labels unique (an extra collection of the main one's name gets '-2').
        """
        labels: dict[str, str] = {}
        for name in self.evals:
            if name in OWN_SPLITS:
                label = Path(args.collection).name
                split = args.eval_split if name == "main" else (args.dev_split or "dev-from-train")
            else:
                label, split = name, "test"
            for suffix in (".jsonl", ".json", ".tsv"):
                label = label.removesuffix(suffix)
            base = label = f"{label}-{split}"
            n = 2
            while label in labels.values():
                label, n = f"{base}-{n}", n + 1
            labels[name] = label
        return labels


def load_run_collections(args: EpisodeArguments) -> RunCollections:
    """Read a run's collections as its settings name them.

    A collection without splits (DPR json, Tevatron jsonl) refuses --eval_split test, its training queries, saying what
    to pass.

    Args:
        args: the run's settings (collection, splits, passages, dev split or --dev_from_train, eval collections).

    Returns:
        The collections, one corpus in memory for the training collection's splits (encoded once per episode).
    """
    path = _resolved(args.collection)
    check_split(args.collection, args.train_split, flag="--train_split")
    check_split(args.collection, args.eval_split, flag="--eval_split")
    train = load_collection(args.collection, split=args.train_split, passages=args.passages)
    out = RunCollections(train, sources={id(train): (path, args.train_split)},
                         train_files=(_source_paths(train), _source_paths(train.corpus)))
    if args.eval_split:
        main = load_collection(args.collection, split=args.eval_split, passages=args.passages)
        main.corpus = train.corpus
        out.add("main", main, (path, args.eval_split))
    # the dev split the kept episode is chosen on, evaluated after every episode like the test split
    if args.dev_split:
        check_split(args.collection, args.dev_split, flag="--dev_split")
        dev = load_collection(args.collection, split=args.dev_split, passages=args.passages)
        dev_source = (path, args.dev_split)
    elif args.dev_from_train:
        out.train, dev = hold_out_dev(train, args.dev_from_train, args.seed)
        dev_source = (path, f"{args.train_split}:dev-from-train")
        out.sources[id(out.train)] = (path, f"{args.train_split}:rest")
    if args.dev_split or args.dev_from_train:
        dev.corpus = out.train.corpus
        out.add("dev", dev, dev_source)
    for extra in args.eval_collections:
        name, n = Path(extra).name, 2
        while name in out.evals:  # two folders of one name are both evaluated
            name, n = f"{Path(extra).name}-{n}", n + 1
        split = "test" if collection_splits(extra) is not None else None  # a file without splits: all of it
        out.add(name, load_collection(extra, split=split), (_resolved(extra), "test"))
    return out


class TokenCaches:
    """The token caches of a run's collections, each made (or found) once, with the base model's tokenizer.

    Args:
        args: the run's settings (model, backend, query and passage lengths).
        cache_dir: where the caches live (shared between runs).
        sources: `RunCollections.sources`, the key of each collection's query cache.
    """

    def __init__(self, args: EpisodeArguments, cache_dir: Path, sources: dict[int, tuple[str, str]]):
        self.args, self.cache_dir, self.sources = args, cache_dir, sources
        self._caches: dict[tuple, TokenCache] = {}
        self._tokenizer = None

    @property
    def tokenizer(self) -> Any:
        """The base model's tokenizer, loaded on first use."""
        if self._tokenizer is None:
            _, self._tokenizer = load_encoder(self.args.model_name_or_path, "cpu", backend=self.args.backend)
        return self._tokenizer

    def get(self, collection: Collection, kind: str) -> TokenCache:
        """The token cache of a collection's corpus or queries.

        Args:
            collection: a collection of the run.
            kind: 'corpus' (one cache per corpus in memory) or 'queries' (one per path and split).

        Returns:
            The memory-mapped token cache.
        """
        key = (id(collection.corpus) if kind == "corpus" else self.sources.get(id(collection), id(collection)), kind)
        if key not in self._caches:
            if kind == "corpus":
                self._caches[key] = corpus_token_cache(collection, self.tokenizer, self.args.p_max_len, self.cache_dir)
            else:
                self._caches[key] = query_token_cache(collection, self.tokenizer, self.args.q_max_len, self.cache_dir)
        return self._caches[key]
