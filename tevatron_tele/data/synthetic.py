"""A small deterministic retrieval collection where hard negatives matter, and a tiny random BERT for it.

Layout per topic (all words are made-up two-syllable tokens, so a word-level vocab covers them):
  - a few queries, each asking for one *key term* plus some topic and facet words;
  - for each query a cluster: its positive passage (contains the key term) and near-duplicates of that passage whose
    key term is swapped for a decoy word (the hardest negatives);
  - distractors that reuse the topic's words and a query's facet words but no key term;
plus random passages made of filler and words of other topics. In-batch and random negatives (mostly other topics)
only teach topic words; ranking the positive above its near-duplicates needs the key term, which hard (mined)
negatives teach. BM25 finds the positives easily (the key term is rare), so it is a strong baseline. With `synonyms`
(the demo's collection) BM25 ties a positive with its near-duplicates (nDCG@10 0.749 on the demo's test queries,
1.000 without).
"""
from __future__ import annotations

import json
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from ..utils import PathLike, atomic_path

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_PARAMS_FILE = "synthetic.json"
_FORMAT_VERSION = 1

# Sizes per topic (kept small so the default collection is a few hundred short passages).
_QUERIES_PER_TOPIC = 4
_TEST_QUERIES_PER_TOPIC = 1
_NEAR_DUPLICATES = 2
_DISTRACTORS_PER_TOPIC = 3
_TOPIC_WORDS = 8
_FACET_WORDS = 2
_FILLER_WORDS = 120
_RANDOM_PASSAGES_PER_TOPIC = 3
# With synonyms: the key concepts of a topic, and how often a query names its key term by the synonym.
_CONCEPTS_PER_TOPIC = 2
_P_SYNONYM = 0.8


def vocabulary() -> list[str]:
    """Every word the generator can emit (fixed, independent of seed and size): CVCV tokens."""
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    return [a + b for a in syllables for b in syllables]


def _pad_with(rng: random.Random, words: list[str], pool: list[str], lo: int, hi: int) -> list[str]:
    """Shuffle `words` among filler from `pool` so the text has between lo and hi words."""
    target = max(len(words), rng.randint(lo, hi))
    out = list(words) + [rng.choice(pool) for _ in range(target - len(words))]
    rng.shuffle(out)
    return out


class _Synonyms:
    """The query side of a collection with synonyms (see `generate`). It draws from its own generator, so the
    collection's other draws (filler, facets, passage order) stay those of the collection without synonyms."""

    def __init__(self, spare: list[str], n_topics: int, seed: int):
        self.rng = random.Random(f"synonyms-{seed}")
        words = iter(spare)
        self.concepts = [[next(words) for _ in range(_CONCEPTS_PER_TOPIC)] for _ in range(n_topics)]
        self.of = {c: next(words) for topic in self.concepts for c in topic}

    @staticmethod
    def words_needed(n_topics: int) -> int:
        return n_topics * 2 * _CONCEPTS_PER_TOPIC

    def key_and_decoy(self, t: int) -> tuple[str, str]:
        """Topic t's concepts in a random order: the query's key term and its near-duplicates' decoy."""
        key, decoy = self.rng.sample(self.concepts[t], 2)
        return key, decoy

    def say(self, word: str) -> str:
        """`word`, or (with probability _P_SYNONYM) its query-side synonym."""
        return self.of[word] if self.rng.random() < _P_SYNONYM else word


class _Collection:
    """The corpus, queries and qrels being generated."""

    def __init__(self):
        self.corpus: list[dict] = []
        self.queries: list[dict] = []
        self.qrels: dict[str, list[tuple[str, str, int]]] = {"train": [], "test": []}

    def add_passage(self, title: list[str], text: list[str]) -> str:
        docid = f"d{len(self.corpus)}"
        self.corpus.append({"_id": docid, "title": " ".join(title), "text": " ".join(text)})
        return docid


def _add_topic(out: _Collection, rng: random.Random, t: int, block: list[str], filler: list[str],
               syn: _Synonyms | None, shared_positives: bool) -> None:
    """Topic t's queries, their clusters (positive and near-duplicates) and its distractors, from its words."""
    topic_words, block = block[:_TOPIC_WORDS], block[_TOPIC_WORDS:]
    title = topic_words[:2]
    facets_all: list[list[str]] = []
    for q in range(_QUERIES_PER_TOPIC):
        key, decoy = block[0], block[1]
        if syn is not None:  # the topic's concepts: its training queries teach the synonyms its test query uses
            key, decoy = syn.key_and_decoy(t)
        facets = block[2:2 + _FACET_WORDS]
        block = block[2 + _FACET_WORDS:]
        facets_all.append(facets)
        qid = f"q{t}_{q}"
        q_topic = rng.sample(topic_words, 2)
        q_words = [key] + facets + q_topic
        if syn is not None:  # the query may name its key term in other words than its passage
            q_words = [syn.say(key)] + facets + q_topic
        rng.shuffle(q_words)
        out.queries.append({"_id": qid, "text": " ".join(q_words)})
        # The positive: key term, facets and topic words among filler.
        body = [key] + facets + q_topic + rng.sample([w for w in topic_words if w not in q_topic], 2)
        positive = _pad_with(rng, body, filler, 10, 30)
        pos_id = out.add_passage(title, positive)
        split = "test" if q >= _QUERIES_PER_TOPIC - _TEST_QUERIES_PER_TOPIC else "train"
        out.qrels[split].append((qid, pos_id, 1))
        # Near-duplicates: same text, key term replaced by the decoy, one filler word changed.
        for _ in range(_NEAR_DUPLICATES):
            dup = [decoy if w == key else w for w in positive]
            fill_pos = [i for i, w in enumerate(dup) if w in filler]
            if fill_pos:
                dup[rng.choice(fill_pos)] = rng.choice(filler)
            out.add_passage(title, dup)
    if shared_positives:  # within a split, so no test passage is judged for a training query
        for rows in out.qrels.values():
            topic_rows = [r for r in rows if r[0].startswith(f"q{t}_")]
            rows += [(qid, pos, 1) for qid, own, _ in topic_rows for other, pos, _ in topic_rows if other != qid]
    for _ in range(_DISTRACTORS_PER_TOPIC):
        facets = rng.choice(facets_all)
        body = facets + rng.sample(topic_words, 5)
        out.add_passage(title, _pad_with(rng, body, filler, 10, 30))


def generate(n_topics: int = 40, seed: int = 0, shared_positives: bool = False, synonyms: bool = False) -> dict:
    """Build the collection in memory.

    Args:
        n_topics: topics (each 4 queries, 3 for training and 1 for test, and 21 passages).
        seed: the seed of every draw.
        shared_positives: each query also gets its topic's other queries' positives (grade 1), like collections
            with deep judgements of related passages.
        synonyms: each topic has two key concepts: a query asks for one, its positive holds it, its near-duplicates
            the other. Each concept has a synonym only queries use, naming the key term with probability 0.8, so a
            lexical ranker cannot tell most positives from near-duplicates; a dense model can learn the synonyms
            from the topic's training queries.

    Returns:
        {"corpus": [{"_id", "title", "text"}], "queries": [{"_id", "text"}], "qrels": {"train": [...],
        "test": [...]}} with qrels rows (query id, passage id, grade).
    """
    if n_topics < 1:
        raise ValueError(f"n_topics must be >= 1, got {n_topics}")
    rng = random.Random(seed)
    words = vocabulary()
    per_topic = _TOPIC_WORDS + _QUERIES_PER_TOPIC * (1 + _FACET_WORDS + 1)  # + key + facets + decoy
    needed = _FILLER_WORDS + n_topics * per_topic + (_Synonyms.words_needed(n_topics) if synonyms else 0)
    if needed > len(words):
        raise ValueError(f"n_topics={n_topics} needs {needed} distinct words, the generator has {len(words)}")
    rng.shuffle(words)
    filler, rest = words[:_FILLER_WORDS], words[_FILLER_WORDS:]
    blocks = [rest[t * per_topic:(t + 1) * per_topic] for t in range(n_topics)]
    all_topic_words = [w for block in blocks for w in block[:_TOPIC_WORDS]]
    syn = _Synonyms(rest[n_topics * per_topic:], n_topics, seed) if synonyms else None
    out = _Collection()
    for t, block in enumerate(blocks):
        _add_topic(out, rng, t, block, filler, syn, shared_positives)
    for _ in range(n_topics * _RANDOM_PASSAGES_PER_TOPIC):
        body = rng.sample(all_topic_words, 3)
        out.add_passage(rng.sample(filler, 2), _pad_with(rng, body, filler, 10, 30))

    # Shuffle passage order so position carries no signal, keeping ids stable.
    order = list(range(len(out.corpus)))
    rng.shuffle(order)
    corpus = [out.corpus[i] for i in order]
    if syn is not None:  # ids in the shuffled order too: a positive's id (made before its near-duplicates') would
        # otherwise win the ties of a ranker that breaks them by id, as Lucene does
        new_ids = {doc["_id"]: f"d{i}" for i, doc in enumerate(corpus)}
        corpus = [{**doc, "_id": new_ids[doc["_id"]]} for doc in corpus]
        out.qrels = {split: [(q, new_ids[d], g) for q, d, g in rows] for split, rows in out.qrels.items()}
    return {"corpus": corpus, "queries": out.queries, "qrels": out.qrels}


def _params(n_topics: int, seed: int, shared_positives: bool = False, synonyms: bool = False) -> dict:
    """The parameters a folder records (the options only when set, so folders made before them stay valid)."""
    params = {"format_version": _FORMAT_VERSION, "n_topics": n_topics, "seed": seed}
    options = {"shared_positives": shared_positives, "synonyms": synonyms}
    return {**params, **{k: True for k, on in options.items() if on}}


def make_synthetic_collection(out_dir: PathLike, *, n_topics: int = 40, seed: int = 0,
                              shared_positives: bool = False, synonyms: bool = False) -> Path:
    """Write the collection as a BEIR folder (corpus.jsonl, queries.jsonl, qrels/{train,test}.tsv).

    Deterministic in its arguments. A complete folder with the same parameters is reused; one made here with other
    parameters is replaced atomically (other folders are refused, see `utils.atomic_path`).

    Args:
        out_dir: the folder to write.
        n_topics, seed, shared_positives, synonyms: as in `generate` (synonyms: the demo's collection).

    Returns:
        `out_dir`.
    """
    out_dir = Path(out_dir)
    params = _params(n_topics, seed, shared_positives, synonyms)
    marker = out_dir / _PARAMS_FILE
    if marker.exists():
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == params:
                return out_dir
        except json.JSONDecodeError:
            pass
    data = generate(n_topics=n_topics, seed=seed, shared_positives=shared_positives, synonyms=synonyms)
    with atomic_path(out_dir, replaces=lambda p: (p / _PARAMS_FILE).exists()) as tmp:  # only a collection made here
        (tmp / "qrels").mkdir(parents=True)
        with open(tmp / "corpus.jsonl", "w", encoding="utf-8") as f:
            for doc in data["corpus"]:
                f.write(json.dumps(doc) + "\n")
        with open(tmp / "queries.jsonl", "w", encoding="utf-8") as f:
            for q in data["queries"]:
                f.write(json.dumps(q) + "\n")
        for split, rows in data["qrels"].items():
            with open(tmp / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
                f.write("query-id\tcorpus-id\tscore\n")
                for qid, docid, grade in rows:
                    f.write(f"{qid}\t{docid}\t{grade}\n")
        # Written last: its presence means the folder is complete.
        (tmp / _PARAMS_FILE).write_text(json.dumps(params) + "\n", encoding="utf-8")
    logger.info("synthetic collection: %d passages, %d queries -> %s",
                len(data["corpus"]), len(data["queries"]), out_dir)
    return out_dir


def _collection_words(folder: Path, max_words: int) -> list[str]:
    """Words of a BEIR folder's corpus and queries, split as BERT's basic tokenizer does, most frequent first."""
    normalizer, splitter = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for name, fields in (("corpus.jsonl", ("title", "text")), ("queries.jsonl", ("text",))):
        path = folder / name
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                row = json.loads(line)
                for field in fields:
                    text = normalizer.normalize_str(row.get(field) or "")
                    counts.update(w for w, _ in splitter.pre_tokenize_str(text))
    # Sort by (-count, word) so the vocab is deterministic.
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [w for w, _ in ranked[:max_words]]


def _word_level(vocab: list[str]) -> Tokenizer:
    """A lower-casing, whitespace-splitting word-level tokenizer of `vocab` (unknown words: `<unk>`)."""
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return backend


def build_tiny_model(
    out_dir: PathLike,
    *,
    vocab_source: PathLike | None = None,
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
    max_words: int = 30000,
    decoder: bool = False,
) -> Path:
    """Save a randomly initialised BERT and a word-level BertTokenizer, loadable by AutoModel/AutoTokenizer.

    Args:
        out_dir: the model folder to write.
        vocab_source: a BEIR folder whose words make the vocabulary (default: the generator's words).
        hidden_size, num_layers: model width and encoder (or decoder) layers.
        seed: weight initialisation seed (the output is deterministic in the arguments).
        max_words: vocabulary cap (most frequent words first).
        decoder: a LLaMA-style decoder and a word-level fast tokenizer instead (`<pad>`, `<unk>`, `<s>`, `</s>`; no
            BOS added, right padding), for last-token pooling tests without downloads.

    Returns:
        `out_dir`.
    """
    import torch  # lazy: torch and transformers take seconds to import, which the collection generator does without
    import transformers  # lazy: as torch

    out_dir = Path(out_dir)
    words = vocabulary() if vocab_source is None else _collection_words(Path(vocab_source), max_words)
    special = ["<pad>", "<unk>", "<s>", "</s>"] if decoder else SPECIAL_TOKENS
    vocab = special + [w for w in dict.fromkeys(words) if w not in set(special)]
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        if decoder:
            tokenizer = transformers.PreTrainedTokenizerFast(
                tokenizer_object=_word_level(vocab), unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                eos_token="</s>", padding_side="right")
            model_class, config = transformers.LlamaModel, transformers.LlamaConfig(
                vocab_size=len(vocab), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                num_hidden_layers=num_layers, num_attention_heads=2, num_key_value_heads=2,
                max_position_embeddings=512, pad_token_id=0, bos_token_id=2, eos_token_id=3)
        else:
            vocab_file = tmp / "vocab.txt"
            vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
            # BertTokenizer (not BertTokenizerFast(vocab_file=...), which ignores the file under transformers 5).
            tokenizer = transformers.BertTokenizer(str(vocab_file), do_lower_case=True)
            heads = max(h for h in range(1, max(1, hidden_size // 16) + 1) if hidden_size % h == 0)
            model_class, config = transformers.BertModel, transformers.BertConfig(
                vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=num_layers,
                num_attention_heads=heads, intermediate_size=hidden_size * 2, max_position_embeddings=512)
        tokenizer.save_pretrained(tmp)
        torch.manual_seed(seed)
        model_class(config).save_pretrained(tmp)
    logger.info("tiny %s (vocab %d, hidden %d, %d layers) -> %s", "LLaMA decoder" if decoder else "BERT", len(vocab),
                hidden_size, num_layers, out_dir)
    return out_dir


def build_tiny_decoder(out_dir: PathLike, **options: Any) -> Path:
    """A tiny LLaMA-style decoder: `build_tiny_model(out_dir, decoder=True, **options)`.

    Args:
        out_dir: the model folder to write.
        **options: `build_tiny_model`'s vocab_source, hidden_size, num_layers, seed, max_words.

    Returns:
        `out_dir`.
    """
    return build_tiny_model(out_dir, decoder=True, **options)
