"""Explicit randomness: every draw comes from a generator derived from
(seed, stream name, index...). No global RNG is ever touched, so a seed's
numbers do not depend on which other seeds share its ensemble."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *stream: object) -> int:
    """A 63-bit seed that depends only on `seed` and the stream path."""
    key = "/".join([str(int(seed)), *map(str, stream)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def generator(seed: int, *stream: object) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(derive_seed(seed, *stream))
    return gen


def init_seeds(seeds: list[int], stream: str | None) -> list[int]:
    """The seeds models initialize from: the seeds themselves, or derived from
    (seed, stream), so that one stream's initializations are independent of another's."""
    return list(seeds) if stream is None else [derive_seed(seed, "init-stream", stream) for seed in seeds]
