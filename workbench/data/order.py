"""Seeded orders that mean the same on every machine (the split, the batch order)."""

from __future__ import annotations

import hashlib


def stable_order(n: int, seed: int, salt: str) -> list[int]:
    """A permutation of range(n) determined by (seed, salt) alone.

    Sorting by sha256 keys, not Python's hash() (salted per process) or a library RNG (whose streams
    may change between versions), so a seed means the same order on every machine, forever.
    """

    def key(i: int) -> bytes:
        return hashlib.sha256(f"{salt}:{seed}:{i}".encode()).digest()

    return sorted(range(n), key=key)
