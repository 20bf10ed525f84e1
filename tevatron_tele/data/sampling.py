"""The rules that choose a training step's negatives from a pool: Tevatron's concat window and per-source quotas.

Both depend only on (seed, epoch, item): a run repeats exactly, and a resumed run draws what an uninterrupted one would.
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

# The default per-source weights of `weighted` mixing, and the same as a --source_weights value.
DEFAULT_SOURCE_WEIGHTS = {"ann": 0.5, "lookahead": 0.25, "momentum": 0.25}
DEFAULT_SOURCE_WEIGHTS_TEXT = ",".join(f"{name}={weight}" for name, weight in DEFAULT_SOURCE_WEIGHTS.items())
_HASH_MODULUS = 2**61 - 1  # Python's hash of a non-negative int below this is the int itself


def example_seed(item: int, seed: int) -> int:
    """Per-example seed; equals Tevatron's `hash(item + seed)` without depending on Python's hashing."""
    return (int(item) + int(seed)) % _HASH_MODULUS


def _dedupe(keys: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(int(k) for k in keys))


def quotas(weights: dict[str, float], n: int) -> dict[str, int]:
    """Split n slots by weight (largest remainder; ties go to the earlier source)."""
    total = sum(weights.values())
    if n <= 0 or total <= 0:
        return {name: 0 for name in weights}
    exact = {name: n * w / total for name, w in weights.items()}
    counts = {name: int(v) for name, v in exact.items()}
    order = sorted(weights, key=lambda name: -(exact[name] - counts[name]))
    for name in order[: n - sum(counts.values())]:
        counts[name] += 1
    return counts


def select_concat(negatives: Sequence[int], n: int, hashed_seed: int, epoch: int, *, no_shuffle: bool = False
                  ) -> list[int]:
    """Tevatron 0.1.0's negative choice: shuffled by the example seed, a window moving with the epoch.

    Duplicates are kept, so a negative listed by several sources is seen more often. A list shorter than n is
    sampled with replacement, seeded (Tevatron uses the global RNG there).
    """
    if n == 0:
        return []
    if len(negatives) < n:
        return random.Random(f"{hashed_seed}:{epoch}:replace").choices(list(negatives), k=n)
    if no_shuffle:
        return list(negatives[:n])
    offset = epoch * n % len(negatives)
    negs = list(negatives)
    random.Random(hashed_seed).shuffle(negs)
    negs = negs * 2
    return negs[offset: offset + n]


def select_weighted(sources: dict[str, Sequence[int]], weights: dict[str, float], n: int, hashed_seed: int,
                    epoch: int) -> list[int]:
    """Per-source quotas from `weights` over the sources present, de-duplicated across sources.

    A source with fewer distinct negatives than its quota gives what it has; the rest comes from the other sources
    (round robin). Only when all together hold fewer than n distinct negatives are the missing ones drawn again,
    with replacement.
    """
    if n == 0:
        return []
    lists: dict[str, list[int]] = {}
    for name, keys in sources.items():
        unique = _dedupe(keys)
        if unique:
            random.Random(f"{hashed_seed}:{name}").shuffle(unique)
            lists[name] = unique
    if not lists:
        return []
    present = {name: weights.get(name, 0.0) for name in lists}
    if sum(present.values()) <= 0:
        present = {name: 1.0 for name in lists}  # none of the weighted sources here: share equally
    quota = quotas(present, n)
    rotated = {}
    for name, keys in lists.items():
        offset = epoch * max(quota[name], 1) % len(keys)
        rotated[name] = keys[offset:] + keys[:offset]

    chosen: list[int] = []
    seen: set[int] = set()
    for name, keys in rotated.items():
        taken = 0
        for key in keys:
            if taken == quota[name]:
                break
            if key not in seen:
                seen.add(key)
                chosen.append(key)
                taken += 1
    if len(chosen) < n:  # fill short quotas from the other sources, round robin
        iters = [iter(keys) for keys in rotated.values()]
        while len(chosen) < n and iters:
            for it in list(iters):
                key = next((k for k in it if k not in seen), None)
                if key is None:
                    iters.remove(it)
                    continue
                seen.add(key)
                chosen.append(key)
                if len(chosen) == n:
                    break
    if len(chosen) < n:
        pool = sorted(seen)
        chosen += random.Random(f"{hashed_seed}:{epoch}:replace").choices(pool, k=n - len(chosen))
    return chosen
