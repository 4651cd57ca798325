"""Deterministic seeds per (run, iteration, role, prompt, ...) that do not depend on the process.

Python's ``hash`` is salted per process, so it cannot name a seed that must be the same after a resume
or on another worker; a keyed BLAKE2b digest of an unambiguous encoding can.
"""

from __future__ import annotations

import hashlib

_PERSON = b"metareward.seed"  # domain separation: these digests are never confused with other uses
_MAX_SEED = 2**63


def _encode(part: str | int) -> bytes:
    # Type tag + length prefix, so ("ab", "c") and ("a", "bc"), or 1 and "1", never collide.
    if isinstance(part, bool) or not isinstance(part, (str, int)):
        raise TypeError(f"seed parts must be str or int, got {type(part).__name__}: {part!r}.")
    tag, payload = (b"s", part.encode("utf-8")) if isinstance(part, str) else (b"i", str(part).encode("ascii"))
    return tag + len(payload).to_bytes(8, "big") + payload


def derive_seed(base_seed: int, *parts: str | int) -> int:
    """Seed in [0, 2**63) from ``base_seed`` and ``parts``: first 8 bytes of BLAKE2b, top bit cleared.

    Same inputs give the same seed in every process and Python version; changing, adding, removing or
    reordering any part gives a different one (up to hash collisions, probability ~2**-63).
    """
    digest = hashlib.blake2b(digest_size=8, person=_PERSON)
    for part in (base_seed, *parts):
        digest.update(_encode(part))
    return int.from_bytes(digest.digest(), "big") % _MAX_SEED
