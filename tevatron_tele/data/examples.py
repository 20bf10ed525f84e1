"""Model inputs from cached token ids: the tokenizer's special tokens put around ids, no text processing.

Tokenizers of transformers 5 no longer take lists of ids (`encode_plus` is gone, and fast tokenizers refuse ids in
`__call__`), so the template is found once per tokenizer and applied by hand.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

_SPECIAL_LAYOUT_ATTR = "_tele_special_layout"


def _special_layout(tokenizer) -> tuple[list[int], list[int]]:
    """The (prefix, suffix) special-token ids the tokenizer puts around one sequence, found (once) by tokenizing a
    probe with and without them, so any template works (BERT's [CLS] x [SEP], RoBERTa's <s> x </s>, T5's x </s>)."""
    cached = getattr(tokenizer, "__dict__", {}).get(_SPECIAL_LAYOUT_ATTR)
    if cached is not None:
        return cached
    probe = "retrieval probe text"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            layout = (full[:start], full[start + len(plain) :])
            break
    else:
        raise ValueError(f"cannot find how {type(tokenizer).__name__} adds special tokens around a sequence")
    try:
        tokenizer.__dict__[_SPECIAL_LAYOUT_ATTR] = layout
    except (AttributeError, TypeError):
        pass
    return layout


def build_example(tokenizer, token_ids: Sequence[int], max_len: int, *, text_prefix: Sequence[int] = (),
                  eos_token_id: int | None = None) -> dict[str, list[int]]:
    """Build one model input from token ids that carry no special tokens.

    Same result as transformers 4's `encode_plus(token_ids, truncation='only_first', max_length=max_len,
    padding=False, return_attention_mask=False, return_token_type_ids=False)`. The collator pads and adds the mask.

    Args:
        tokenizer: the model's tokenizer (only its special-token template is used).
        token_ids: the text's ids without special tokens, e.g. a token-cache row; cut to fit `max_len`.
        max_len: length of the whole input, special tokens included.
        text_prefix: ids put before the text inside the special tokens (e.g. "query: "); they count in `max_len`.
        eos_token_id: appended last, within `max_len` (Tevatron's `--append_eos_token`, for last-token pooling).

    Returns:
        `{"input_ids": [...]}`.
    """
    prefix, suffix = _special_layout(tokenizer)
    room = max_len - len(prefix) - len(suffix) - (eos_token_id is not None)
    if room < 0:
        raise ValueError(f"max_len={max_len} leaves no room beside {len(prefix) + len(suffix)} special tokens")
    body = token_ids[:max(room - len(text_prefix), 0)]
    # one bulk conversion: element-wise int() on a memory-mapped slice costs ~15x more
    body = body.tolist() if hasattr(body, "tolist") else [int(t) for t in body]
    if text_prefix:
        body = (list(text_prefix) + body)[:room]
    ids = prefix + body + suffix
    return {"input_ids": ids + [eos_token_id] if eos_token_id is not None else ids}


@dataclass(frozen=True)
class InputFormat:
    """Input building beyond the tokenizer's template: Tevatron's `--query_prefix` / `--passage_prefix` (tokenized
    once) and `--append_eos_token`."""

    query_prefix: tuple[int, ...] = ()
    passage_prefix: tuple[int, ...] = ()
    eos_token_id: int | None = None

    @classmethod
    def from_texts(cls, tokenizer, query_prefix: str = "", passage_prefix: str = "",
                   append_eos_token: bool = False) -> InputFormat:
        """The format for prefix strings and the EOS switch, with the prefixes tokenized by `tokenizer`."""
        def ids(text: str) -> tuple[int, ...]:
            return tuple(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else ()

        if append_eos_token and tokenizer.eos_token_id is None:
            raise ValueError("--append_eos_token: the tokenizer has no eos_token")
        return cls(ids(query_prefix), ids(passage_prefix), tokenizer.eos_token_id if append_eos_token else None)

    def build(self, tokenizer, token_ids: Sequence[int], max_len: int, *, is_query: bool) -> dict[str, list[int]]:
        """One query's or passage's model input (see `build_example`)."""
        return build_example(tokenizer, token_ids, max_len, text_prefix=self.query_prefix if is_query
                             else self.passage_prefix, eos_token_id=self.eos_token_id)
