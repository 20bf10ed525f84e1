"""Load retrieval collections (BEIR, MS MARCO TSV, DPR QA, Tevatron jsonl) into one form, with validation.

Every input problem is reported as "<file>:<line>: field '<name>': <problem>", so a bad line can be fixed without
reading this code. Structural problems (malformed JSON, missing fields, duplicate ids) always raise; qrels naming
unknown ids are dropped with a warning, or raise when strict=True. A loaded corpus is streamed into a memory-mapped
store on disk (`corpus_store`), which a later load of the same unchanged files opens instead of parsing again.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from ..utils import InputFileError, PathLike, iter_jsonl, iter_lines, location, read_text
from .corpus_store import CorpusStore, CorpusWriter, open_or_build
from .id_index import IdIndex

logger = logging.getLogger(__name__)

FORMATS = ("beir", "msmarco", "dpr", "tevatron")


class CollectionError(InputFileError):
    """Bad collection input; the message names file, line and field."""


def _error(path: PathLike, line: int | str | None, field_name: str, problem: str) -> CollectionError:
    return CollectionError(location(path, line, field_name, problem))


def _passage_text(title: str, text: str, sep: str) -> str:
    """The text a passage is encoded from: `title <sep> text`, or just the text when untitled."""
    return f"{title} {sep} {text}" if title else text


@dataclass
class Corpus:
    """Passages: ids, titles ("" when untitled) and texts, in corpus order.

    Made in memory from lists, or by a loader over a store on disk (`from_store`), whose columns are read-only
    list-like views (indexable, sliceable, iterable, equal to lists) and whose id look-up is an `IdIndex`, not a dict.
    """

    ids: Sequence[str]
    titles: Sequence[str]
    texts: Sequence[str]
    _index: dict[str, int] | IdIndex | None = field(default=None, init=False, repr=False, compare=False)
    # The files a loader read the corpus from (a `file_stamp` each) and how: a token cache is keyed on them instead
    # of hashing every text; empty when made in memory. Not an __init__ argument, so dataclasses.replace drops it
    # for a derived corpus; code that edits a loaded corpus in place must set it back to ().
    source_files: tuple = field(default=(), init=False, repr=False, compare=False)
    source_reader: str = field(default="", init=False, repr=False, compare=False)

    @classmethod
    def from_store(cls, store: CorpusStore, sources: tuple = (), reader: str = "") -> Corpus:
        """A corpus over an opened store (nothing is read into memory).

        Args:
            store: the store.
            sources, reader: the `file_stamp`s of the files it was read from, and how they were read.

        Returns:
            The corpus.
        """
        corpus = cls(store.ids, store.titles, store.texts)
        corpus._index = store.index
        corpus.source_files, corpus.source_reader = sources, reader
        return corpus

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, docid: str) -> int:
        """The row of a passage (KeyError when it is not in the corpus)."""
        if self._index is None:  # a corpus made in memory: a dict, built on first use
            self._index = {d: i for i, d in enumerate(self.ids)}
        try:
            return self._index[docid]
        except KeyError:
            raise KeyError(f"document id {docid!r} is not in the corpus ({len(self.ids)} documents)") from None

    def __contains__(self, docid: str) -> bool:
        try:
            self.position(docid)
        except KeyError:
            return False
        return True

    def unknown_ids(self, docids: Sequence[str]) -> list[str]:
        """The ids of `docids` not in the corpus, in order; one vectorised look-up for a store-backed corpus.

        Args:
            docids: the ids to check.

        Returns:
            Those not in the corpus (repeats kept).
        """
        if isinstance(self._index, IdIndex):
            rows = self._index.positions(list(docids), missing=-1)
            return [d for d, r in zip(docids, rows.tolist()) if r < 0]
        return [d for d in docids if d not in self]

    def passage_text(self, i: int, sep: str) -> str:
        """Title and text joined by `sep` (the tokenizer's separator), or just the text when untitled."""
        return _passage_text(self.titles[i], self.texts[i], sep)

    def passage_texts(self, start: int, stop: int, sep: str) -> list[str]:
        """`passage_text` of rows start..stop-1, read a slice at a time (fast on a store-backed corpus).

        Args:
            start, stop: the first row and one past the last.
            sep: the tokenizer's separator.

        Returns:
            The passage texts.
        """
        titles, texts = self.titles[start:stop], self.texts[start:stop]
        return [_passage_text(title, text, sep) for title, text in zip(titles, texts)]


@dataclass
class Collection:
    name: str
    corpus: Corpus
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    answers: dict[str, list[str]] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    # The files the queries were read from (a `file_stamp` each; the corpus has its own), as Corpus.source_files:
    # empty when made in memory or derived with dataclasses.replace (a held-out part).
    source_files: tuple = field(default=(), init=False, repr=False, compare=False)

    def positives(self, qid: str) -> list[str]:
        """The passages judged relevant (grade > 0) to the query."""
        return [d for d, grade in self.qrels.get(qid, {}).items() if grade > 0]

    def source_paths(self) -> list[str]:
        """The files queries and corpus were read from, sorted (a step's recorded inputs); empty if made in memory."""
        return sorted({stamp[0] for stamp in (*self.source_files, *self.corpus.source_files)})


def file_stamp(path: PathLike) -> tuple[str, int, int, int, int]:
    """A file's stamp, taken before a loader reads it; a token cache checks the file still has it (source_hash).

    Args:
        path: the file.

    Returns:
        (resolved path, size, mtime_ns, ctime_ns, inode).
    """
    st = os.stat(path)
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


# ---------------------------------------------------------------- low-level readers

def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; malformed JSON or a non-object raises."""
    return iter_jsonl(path, _error)


def _tsv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, columns) for each non-blank line; a BOM and CRLF are accepted, invalid UTF-8 raises."""
    for line_no, line in iter_lines(path, _error):
        if line.strip():
            yield line_no, line.split("\t")


def _str_field(path: Path, line: int | str, obj: dict, name: str, *, required: bool = True,
               allow_empty: bool = False) -> str:
    value = obj.get(name)
    if value is None:
        if required:
            raise _error(path, line, name, "missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _error(path, line, name, f"expected a string, got {type(value).__name__}")
    value = _unicode(path, line, name, str(value))
    if required and not allow_empty and not value.strip():
        raise _error(path, line, name, "empty")
    return value


def _id(path: Path, line: int | str, name: str, value: str) -> str:
    """Refuse an id holding whitespace: TREC run and qrels files split columns on it, so it reads back as other ids."""
    if any(c.isspace() for c in value):
        raise _error(path, line, name, f"id {value!r} holds whitespace, which TREC run and qrels files cannot "
                                       "carry; rename it (e.g. with '_')")
    return value


def _unicode(path: Path, line: int | str, name: str, value: str) -> str:
    """Refuse a lone surrogate (a JSON escape such as "\\ud800"): it cannot be stored, hashed or tokenized."""
    if not value.isascii():  # the common case costs no encoding
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise _error(path, line, name, f"not valid Unicode: lone surrogate {value[e.start]!r} at character "
                                           f"{e.start}") from None
    return value


def _stored_corpus(path: Path, stamp: tuple, reader: str, fill: Callable[[CorpusWriter], None],
                   id_field: Callable[[int], str]) -> Corpus:
    """The corpus `fill` parses from `path` into a store (keyed on `stamp` and `reader`), or an earlier load's store;
    `id_field(line)` names the id field at a line, for the duplicate-id message."""
    def duplicate(docid: str, line: int, first_line: int) -> CollectionError:
        return _error(path, line, id_field(line), f"duplicate document id {docid!r} (first at {path}:{first_line})")

    return Corpus.from_store(open_or_build((stamp,), reader, fill, duplicate), (stamp,), reader)


def _text_digest(text: str) -> int:
    """128-bit hash of a passage text: a repeated passage is compared with its first copy without keeping it."""
    return xxhash.xxh3_128_intdigest(text.encode("utf-8"))


def _parse_grade(path: Path, line: int, raw: str, field_name: str) -> int:
    try:
        value = float(raw)
    except ValueError:
        raise _error(path, line, field_name, f"not a number: {raw!r}") from None
    if not math.isfinite(value) or value != int(value):
        raise _error(path, line, field_name, f"not an integer grade: {raw!r}")
    return int(value)


# first-line words that mark a header (BEIR's `query-id corpus-id score`), not a judgement
_QRELS_HEADER_WORDS = {"query-id", "query_id", "qid", "query", "topic", "corpus-id", "corpus_id", "docid", "doc-id",
                       "score", "grade", "relevance", "label", "rel"}


def read_qrels(path: PathLike) -> dict[str, dict[str, int]]:
    """Relevance judgements from BEIR (`query-id corpus-id score`, header line), TREC / MS MARCO (`qid 0 docid grade`
    or `qid docid grade`) or headerless 2-column `qid docid` (grade 1) files.

    After a BEIR header, rows are split on tabs, so an id holding a space is refused, not read as other columns.
    Errors name the format's own columns (BEIR: query-id, corpus-id, score; TREC: qid, docid, grade). Grades must be
    integers; negative grades (TREC's "junk") are kept and count as not relevant.

    Args:
        path: the qrels file.

    Returns:
        {query id: {document id: grade}}.
    """
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    doc_field, grade_field = "docid", "grade"
    for line_no, line in iter_lines(path, _error):
        parts = line.split()
        if not parts:
            continue
        if doc_field == "corpus-id":  # BEIR is tab-separated: a corpus-id with a space stays one (refused) id
            parts = [p.strip() for p in line.strip().split("\t")]
            for name, value in zip(("query-id", "corpus-id"), parts[:2]):
                _id(path, line_no, name, value)
        if line_no == 1 and not _is_number(parts[-1]) and _QRELS_HEADER_WORDS & {p.lower() for p in parts}:
            doc_field, grade_field = "corpus-id", "score"  # header line such as "query-id corpus-id score" (BEIR)
            continue
        if len(parts) == 4:
            qid, _, docid, grade = parts
        elif len(parts) == 3:
            qid, docid, grade = parts
        elif len(parts) == 2 and grade_field == "grade":  # a bare list of relevant pairs; BEIR needs 3
            (qid, docid), grade = parts, "1"
        else:
            expected = "3 (query-id corpus-id score)" if grade_field == "score" else "2 to 4"
            raise _error(path, line_no, "<columns>", f"expected {expected} columns, got {len(parts)}")
        grades = qrels.setdefault(qid, {})
        if docid in grades:
            raise _error(path, line_no, doc_field, f"duplicate judgement for query {qid!r}, document {docid!r}")
        grades[docid] = _parse_grade(path, line_no, grade, grade_field)
    return qrels


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _require(path: Path, count: int, field_name: str, what: str) -> None:
    """Refuse a file that yielded nothing (0 bytes, blank lines, or only a header)."""
    if count == 0:
        raise _error(path, None, field_name, f"empty: no {what} in the file")


# ---------------------------------------------------------------- corpus readers

def _beir_id_field(obj: dict) -> str:
    return "docid" if "_id" not in obj and "docid" in obj else "_id"  # BEIR's _id; docid also read


def _read_beir_corpus(path: Path, writer: CorpusWriter) -> None:
    for line_no, obj in _jsonl(path):
        id_field = _beir_id_field(obj)
        if id_field not in obj:
            raise _error(path, line_no, "_id", "missing (nor a 'docid')")
        docid = _id(path, line_no, id_field, _str_field(path, line_no, obj, id_field))
        title = _str_field(path, line_no, obj, "title", required=False)
        text = _str_field(path, line_no, obj, "text", allow_empty=True)
        writer.add(docid, title, text, line_no)
    _require(path, len(writer), "_id", "documents")


def _beir_id_field_at(path: Path, line: int) -> str:
    """The id field of one line, read again (only for an error message)."""
    return next((_beir_id_field(obj) for line_no, obj in _jsonl(path) if line_no == line), "_id")


def _beir_corpus(path: Path) -> Corpus:
    return _stored_corpus(path, file_stamp(path), "beir", lambda writer: _read_beir_corpus(path, writer),
                          lambda line: _beir_id_field_at(path, line))


def _tsv_corpus(path: Path, *, dpr: bool = False) -> Corpus:
    """MS MARCO `id<TAB>text` or `id<TAB>title<TAB>text`; DPR `id<TAB>text<TAB>title` with a header."""
    return _stored_corpus(path, file_stamp(path), "tsv-dpr" if dpr else "tsv",
                          lambda writer: _read_tsv_corpus(path, writer, dpr), lambda _: "id")


def _read_tsv_corpus(path: Path, writer: CorpusWriter, dpr: bool) -> None:
    for line_no, parts in _tsv(path):
        if dpr and line_no == 1 and parts[0] == "id":
            continue
        if len(parts) == 2 and not dpr:
            docid, title, text = parts[0], "", parts[1]
        elif len(parts) == 3:
            docid, text, title = parts if dpr else (parts[0], parts[2], parts[1])
        else:
            expected = "3 (id, text, title)" if dpr else "2 (id, text) or 3 (id, title, text)"
            raise _error(path, line_no, "<columns>", f"expected {expected} tab-separated columns, got {len(parts)}")
        if not docid.strip():
            raise _error(path, line_no, "id", "empty")
        _id(path, line_no, "id", docid)
        if dpr and len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1].replace('""', '"')  # DPR's psgs_w100.tsv quotes texts CSV-style
        writer.add(docid, title, text, line_no)
    _require(path, len(writer), "id", "passages")


# ---------------------------------------------------------------- format loaders

def _finish(name: str, corpus: Corpus, queries: dict[str, str], qrels: dict[str, dict[str, int]],
            qrels_path: PathLike, strict: bool, answers: dict[str, list[str]] | None = None,
            split_queries_from_qrels: bool = False) -> Collection:
    """Check qrels against queries and corpus, drop (or refuse) unknown ids, count queries without positives."""
    unknown_q: list[str] = []
    unknown_d: list[tuple[str, str]] = []
    clean: dict[str, dict[str, int]] = {}
    for qid, grades in qrels.items():
        if qid not in queries:
            unknown_q.append(qid)
            continue
        kept = {}
        for docid, grade in grades.items():
            if docid in corpus:
                kept[docid] = grade
            else:
                unknown_d.append((qid, docid))
        clean[qid] = kept
    if unknown_q or unknown_d:
        examples = ", ".join([f"query {q!r}" for q in unknown_q[:3]] + [f"document {d!r}" for _, d in unknown_d[:3]])
        msg = (f"{qrels_path}: {len(unknown_q)} qrels queries and {len(unknown_d)} judged documents are unknown "
               f"(e.g. {examples})")
        if strict:
            raise CollectionError(msg)
        logger.warning("%s; dropped", msg)
    if split_queries_from_qrels:
        queries = {qid: queries[qid] for qid in clean}
    if not queries:
        raise CollectionError(f"{qrels_path}: no query is left: all {len(qrels)} judged queries are unknown "
                              f"(e.g. {unknown_q[:3]}); are the qrels those of this collection?")
    no_positive = [q for q in queries if not any(g > 0 for g in clean.get(q, {}).values())]
    if no_positive:
        logger.info("%s: %d of %d queries have no positive judgement", name, len(no_positive), len(queries))
    stats = {
        "documents": len(corpus), "queries": len(queries),
        "judgements": sum(len(g) for g in clean.values()),
        "unknown_query_ids": len(unknown_q), "unknown_doc_ids": len(unknown_d),
        "queries_without_positives": len(no_positive),
    }
    logger.info("loaded %s: %d documents, %d queries, %d judgements", name, len(corpus), len(queries),
                stats["judgements"])
    return Collection(name, corpus, queries, clean, answers, stats)


def _load_beir(folder: Path, split: str, strict: bool) -> Collection:
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise FileNotFoundError(f"{qrels_path} not found (splits here: {splits})")
    corpus = _beir_corpus(folder / "corpus.jsonl")
    qpath = folder / "queries.jsonl"
    sources = (file_stamp(qpath), file_stamp(qrels_path))  # the split's queries are those its qrels judge
    queries: dict[str, str] = {}
    for line_no, obj in _jsonl(qpath):
        qid = _id(qpath, line_no, "_id", _str_field(qpath, line_no, obj, "_id"))
        if qid in queries:
            raise _error(qpath, line_no, "_id", f"duplicate query id {qid!r}")
        queries[qid] = _str_field(qpath, line_no, obj, "text")
    _require(qpath, len(queries), "_id", "queries")
    qrels = read_qrels(qrels_path)
    _require(qrels_path, len(qrels), "query-id", "judgements")
    collection = _finish(f"{folder.name}/{split}", corpus, queries, qrels, qrels_path, strict,
                         split_queries_from_qrels=True)
    collection.source_files = sources
    return collection


def _msmarco_file(folder: Path, candidates: list[str]) -> Path:
    for name in candidates:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"none of {candidates} found in {folder}")


def _load_msmarco(folder: Path, split: str, strict: bool) -> Collection:
    corpus = _tsv_corpus(_msmarco_file(folder, ["collection.tsv", "corpus.tsv"]))
    qpath = _msmarco_file(folder, [f"queries.{split}.tsv"])
    sources = (file_stamp(qpath),)
    queries: dict[str, str] = {}
    for line_no, parts in _tsv(qpath):
        if len(parts) != 2:
            raise _error(qpath, line_no, "<columns>", f"expected 2 tab-separated columns (qid, text), got {len(parts)}")
        if parts[0] in queries:
            raise _error(qpath, line_no, "qid", f"duplicate query id {parts[0]!r}")
        _id(qpath, line_no, "qid", parts[0])
        if not parts[1].strip():
            raise _error(qpath, line_no, "text", "empty")
        queries[parts[0]] = parts[1]
    _require(qpath, len(queries), "qid", "queries")
    qrels_path = _msmarco_file(folder, [f"qrels.{split}.tsv", f"qrels.{split}.txt"])
    qrels = read_qrels(qrels_path)
    _require(qrels_path, len(qrels), "qid", "judgements")
    collection = _finish(f"{folder.name}/{split}", corpus, queries, qrels, qrels_path, strict)
    collection.source_files = sources
    return collection


def _dpr_ctx_id(path: Path, where: str, ctx: Any) -> str:
    if not isinstance(ctx, dict):
        raise _error(path, where, "positive_ctxs", f"expected objects, got {type(ctx).__name__}")
    for key in ("passage_id", "psg_id", "id"):
        if ctx.get(key) is not None:
            return _id(path, where, key, _unicode(path, where, key, str(ctx[key])))
    raise _error(path, where, "positive_ctxs.passage_id", "missing (also no 'psg_id')")


def _read_dpr(path: Path, writer: CorpusWriter | None, queries: dict[str, str], answers: dict[str, list[str]],
              qrels: dict[str, dict[str, int]]) -> None:
    """Fill `queries`, `answers`, `qrels` from a DPR json file, and `writer` (if given) with each context once."""
    text = read_text(path, _error)
    if not text.strip():
        raise _error(path, None, "<json>", "empty: no questions in the file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _error(path, e.lineno, "<json>", f"malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, list):
        raise _error(path, 1, "<json>", f"expected a list of questions, got {type(data).__name__}")
    _require(path, len(data), "<json>", "questions")
    seen: set[str] = set()
    for i, item in enumerate(data):
        where = f"item {i}"
        if not isinstance(item, dict):
            raise _error(path, where, "<json>", f"expected an object, got {type(item).__name__}")
        qid = _id(path, where, "qid", str(item.get("qid", item.get("id", i))))
        if qid in queries:
            raise _error(path, where, "qid", f"duplicate question id {qid!r}")
        queries[qid] = _str_field(path, where, item, "question")
        ans = item.get("answers")
        if not isinstance(ans, list) or not all(isinstance(a, str) for a in ans):
            raise _error(path, where, "answers", "missing or not a list of strings")
        answers[qid] = ans
        pos = item.get("positive_ctxs", [])
        if not isinstance(pos, list):
            raise _error(path, where, "positive_ctxs", "not a list")
        qrels[qid] = {}
        for ctx in pos:
            qrels[qid][_dpr_ctx_id(path, where, ctx)] = 1
        if writer is not None:
            for key in ("positive_ctxs", "negative_ctxs", "hard_negative_ctxs"):
                for ctx in item.get(key) or []:
                    docid = _dpr_ctx_id(path, where, ctx)
                    if docid not in seen:
                        title = _unicode(path, where, "title", str(ctx.get("title") or ""))
                        writer.add(docid, title, _str_field(path, where, ctx, "text"), i)  # line: the item
                        seen.add(docid)


def _load_dpr(path: Path, passages: PathLike | None, strict: bool) -> Collection:
    stamp = file_stamp(path)
    queries: dict[str, str] = {}
    answers: dict[str, list[str]] = {}
    qrels: dict[str, dict[str, int]] = {}

    def read(writer: CorpusWriter | None) -> None:
        _read_dpr(path, writer, queries, answers, qrels)

    # no passages file: the corpus is every context the file mentions
    corpus = _stored_corpus(path, stamp, "dpr-json", read, lambda _: "passage_id") if passages is None else None
    if not queries:  # the corpus came from a store or from the passages file: read the questions alone
        read(None)
    if corpus is None:
        corpus = _tsv_corpus(Path(passages), dpr=True)
    collection = _finish(path.stem, corpus, queries, qrels, path, strict, answers=answers)
    collection.source_files = (stamp,)
    return collection


def _read_tevatron(path: Path, writer: CorpusWriter | None, queries: dict[str, str],
                   qrels: dict[str, dict[str, int]]) -> None:
    """Fill `queries` and `qrels` from a Tevatron jsonl file, and `writer` (if given) with each passage once."""
    seen: dict[str, int] = {}  # docid -> digest of its first copy's text, which its repeats must equal
    for line_no, obj in _jsonl(path):
        qid = _id(path, line_no, "query_id", _str_field(path, line_no, obj, "query_id"))
        if qid in queries:
            raise _error(path, line_no, "query_id", f"duplicate query id {qid!r}")
        queries[qid] = _str_field(path, line_no, obj, "query" if "query" in obj else "query_text")
        qrels[qid] = {}
        for key in ("positive_passages", "negative_passages"):
            psgs = obj.get(key, [])
            if key == "positive_passages" and key not in obj:
                raise _error(path, line_no, key, "missing")
            if not isinstance(psgs, list):
                raise _error(path, line_no, key, "not a list")
            for p in psgs:
                if not isinstance(p, dict):
                    raise _error(path, line_no, key, f"expected objects, got {type(p).__name__}")
                docid = _id(path, line_no, "docid", _str_field(path, line_no, p, "docid"))
                text = _str_field(path, line_no, p, "text", allow_empty=True)
                title = _str_field(path, line_no, p, "title", required=False)
                if writer is not None:
                    if docid not in seen:
                        seen[docid] = _text_digest(text)
                        writer.add(docid, title, text, line_no)
                    elif seen[docid] != _text_digest(text):
                        raise _error(path, line_no, f"{key}.text", f"document {docid!r} differs from its first copy")
                if key == "positive_passages":
                    qrels[qid][docid] = 1
    _require(path, len(queries), "query_id", "queries")


def _load_tevatron(path: Path, strict: bool) -> Collection:
    stamp = file_stamp(path)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}

    def read(writer: CorpusWriter | None) -> None:
        _read_tevatron(path, writer, queries, qrels)

    corpus = _stored_corpus(path, stamp, "tevatron", read, lambda _: "docid")
    if not queries:  # the corpus came from a store: read the queries alone
        read(None)
    collection = _finish(path.stem, corpus, queries, qrels, path, strict)
    collection.source_files = (stamp,)
    return collection


# ---------------------------------------------------------------- detection and entry points

def detect_format(path: PathLike) -> str:
    """Guess a collection's format from what is on disk.

    Args:
        path: a collection folder or file.

    Returns:
        "beir", "msmarco", "dpr" or "tevatron".
    """
    path = Path(path)
    if path.is_dir():
        if (path / "corpus.jsonl").exists():
            return "beir"
        if (path / "collection.tsv").exists() or (path / "corpus.tsv").exists():
            return "msmarco"
        raise CollectionError(f"{path}: no corpus.jsonl (BEIR) or collection.tsv (MS MARCO) in this folder")
    if path.suffix == ".json":
        return "dpr"
    if path.suffix == ".jsonl":
        return "tevatron"
    raise CollectionError(f"{path}: cannot tell the format; pass fmt= one of {FORMATS}")


# The split a single-file collection (DPR json, Tevatron jsonl) is read as: the loaders' default.
SINGLE_FILE_SPLIT = "train"


def collection_splits(path: PathLike, fmt: str = "auto") -> list[str] | None:
    """The splits a collection offers (BEIR `qrels/<split>.tsv`, MS MARCO `queries.<split>.tsv`, `<split>.jsonl`).

    Args:
        path: the collection (folder or file).
        fmt: its format, or "auto" to detect it.

    Returns:
        The split names (sorted), or None for a single-file collection (DPR json, Tevatron jsonl), which has none.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "beir":
        return sorted(p.stem for p in (path / "qrels").glob("*.tsv"))
    if fmt == "msmarco":
        return sorted(p.name[len("queries."):-len(".tsv")] for p in path.glob("queries.*.tsv"))
    if fmt == "tevatron" and path.is_dir():
        return sorted(p.stem for p in path.glob("*.jsonl"))
    return None


def check_split(path: PathLike, split: str | None, *, flag: str = "--split", fmt: str = "auto") -> None:
    """Refuse a split that a collection without splits cannot give.

    A DPR json or Tevatron jsonl file's queries are read for split None, "" or "train" (SINGLE_FILE_SPLIT); any other
    split (e.g. the runner's default `--eval_split test`) would silently read those same queries, so it is refused.

    Args:
        path, fmt: the collection and its format (or "auto").
        split: the split asked for.
        flag: the option that named it, for the message (e.g. "--eval_split").

    Raises:
        CollectionError: `PATH: field 'split': ...`, saying what to pass instead.
    """
    if split in (None, "", SINGLE_FILE_SPLIT) or collection_splits(path, fmt) is not None:
        return
    kind = "DPR json" if (detect_format(path) if fmt == "auto" else fmt) == "dpr" else "Tevatron jsonl"
    field_name = flag.lstrip("-") or "split"
    if flag == "--eval_split":
        problem = (f"a {kind} file has no splits: --eval_split {split!r} would evaluate on the training queries; "
                   "pass --eval_split '' and give held-out queries as their own file with --eval_collections")
    else:
        problem = (f"a {kind} file has no splits (it is one set of queries), so {flag} {split!r} cannot be chosen; "
                   f"pass {flag} '' to read all its queries")
    raise _error(path, None, field_name, problem)


def load_collection(path: PathLike, split: str | None = "train", *, fmt: str = "auto",
                    passages: PathLike | None = None, strict: bool = False) -> Collection:
    """Load one split of a collection.

    Args:
        path: a BEIR or MS MARCO folder, a DPR json file, a Tevatron jsonl file or folder of them.
        split: the split; a single-file collection (DPR json, Tevatron jsonl) accepts only None, "" or "train".
        fmt: the format, or "auto" to detect it.
        passages: a DPR collection's passages TSV (DPR format only).
        strict: raise on qrels naming unknown queries or documents, instead of dropping and counting them.

    Returns:
        The collection: corpus, the split's queries and qrels (and answers for QA).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS} or 'auto'")
    check_split(path, split, fmt=fmt)
    if fmt in ("beir", "msmarco") and not split:
        raise _error(path, None, "split", f"a {fmt} collection needs a split (here: {collection_splits(path, fmt)})")
    if fmt == "beir":
        return _load_beir(path, split, strict)
    if fmt == "msmarco":
        return _load_msmarco(path, split, strict)
    if fmt == "dpr":
        return _load_dpr(path, passages, strict)
    if path.is_dir():
        if not split or not (path / f"{split}.jsonl").is_file():
            raise _error(path, None, "split", f"no {split}.jsonl here (splits: {collection_splits(path, fmt)})")
        path = path / f"{split}.jsonl"
    return _load_tevatron(path, strict)


def load_corpus(path: PathLike, fmt: str = "auto") -> Corpus:
    """Load only the corpus: a collection folder, a corpus file (.jsonl with _id/docid, .tsv), or a DPR passages TSV.

    Args:
        path: the folder or file.
        fmt: the collection format ('auto' detects it from the folder).

    Returns:
        The corpus (over its on-disk store).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    if path.is_dir():
        fmt = detect_format(path) if fmt == "auto" else fmt
        if fmt == "beir":
            return _beir_corpus(path / "corpus.jsonl")
        if fmt == "msmarco":
            return _tsv_corpus(_msmarco_file(path, ["collection.tsv", "corpus.tsv"]))
        raise CollectionError(f"{path}: a {fmt} corpus must be given as a file")
    if path.suffix == ".tsv":
        first = next((line.split("\t") for _, line in iter_lines(path, _error)), [])
        return _tsv_corpus(path, dpr=fmt == "dpr" or first == ["id", "text", "title"])
    if fmt in ("dpr", "tevatron") or (fmt == "auto" and path.suffix == ".json"):
        return load_collection(path, fmt=fmt).corpus
    if path.suffix == ".jsonl" and fmt == "auto":
        first_line = next((line for _, line in iter_lines(path, _error)), "")
        if '"query_id"' in first_line:
            return load_collection(path, fmt="tevatron").corpus
    return _beir_corpus(path)
