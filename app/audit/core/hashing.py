"""RFC 6962/9162 Merkle tree hashing, the frontier, inclusion and consistency proofs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
ZERO_HASH = bytes(HASH_SIZE)
MAX_PROOF = 63


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || bytes)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The k of RFC 6962's split: the largest power of two strictly less than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaves: list[bytes]) -> bytes:
    """Merkle tree hash of a list of leaf hashes (RFC 6962 MTH; odd nodes promoted)."""
    f = Frontier()
    f.extend_blob(b"".join(leaves))
    return f.root()


# Runs of 2**SUBTREE_MIN..2**SUBTREE_MAX leaves are hashed as whole subtrees by extend_blob.
SUBTREE_MIN, SUBTREE_MAX = 3, 12


class Frontier:
    """The compact right edge of an RFC 6962 tree: one perfect subtree per set bit of
    the size, biggest first. Appending is O(log n); the root folds the edge right to
    left. `on_node(level, index, hash)` sees every perfect subtree completed at or
    above `min_level`, which the app stores so proofs need O(log n) reads."""

    __slots__ = ("hashes", "min_level", "on_node", "size")

    def __init__(
        self,
        size: int = 0,
        hashes: list[bytes] | None = None,
        on_node: Callable[[int, int, bytes], None] | None = None,
        min_level: int = 8,
    ) -> None:
        hashes = list(hashes or [])
        if size < 0 or len(hashes) != bin(size).count("1"):
            raise ValueError("frontier does not match its size")
        if any(not isinstance(h, bytes) or len(h) != HASH_SIZE for h in hashes):
            raise ValueError("frontier hashes must be 32 bytes each")
        self.size = size
        self.hashes = hashes
        self.on_node = on_node
        self.min_level = min_level

    @classmethod
    def from_bytes(cls, size: int, blob: bytes, **kw: Any) -> Frontier:
        if len(blob) % HASH_SIZE:
            raise ValueError("frontier blob is not a whole number of hashes")
        hashes = [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]
        return cls(size, hashes, **kw)

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    def append(self, leaf: bytes) -> None:
        h = leaf
        s = self.size
        level = 0
        hashes = self.hashes
        while s & 1:
            h = hashlib.sha256(NODE_PREFIX + hashes.pop() + h).digest()
            s >>= 1
            level += 1
            if self.on_node is not None and level >= self.min_level:
                self.on_node(level, s, h)
        hashes.append(h)
        self.size += 1

    def append_subtree(self, level: int, h: bytes) -> None:
        """Append the hash of a perfect subtree of 2**level leaves; the size must be a
        multiple of 2**level (the subtree sits where the tree would build it)."""
        size = self.size
        if size & ((1 << level) - 1):
            raise ValueError("subtree is not aligned with the tree size")
        hashes = self.hashes
        s = size >> level
        while s & 1:
            h = hashlib.sha256(NODE_PREFIX + hashes.pop() + h).digest()
            s >>= 1
        hashes.append(h)
        self.size = size + (1 << level)

    def extend_blob(self, blob: bytes) -> None:
        """Append concatenated 32-byte leaf hashes (the verifiers' hot loop). Aligned
        runs are hashed a level at a time, then appended as one perfect subtree: the
        same tree, with a fraction of the interpreter work of leaf-by-leaf appends."""
        if self.on_node is not None:
            for i in range(0, len(blob), HASH_SIZE):
                self.append(blob[i : i + HASH_SIZE])
            return
        sha256 = hashlib.sha256
        n = len(blob) // HASH_SIZE
        pos = 0
        while pos < n:
            size = self.size
            # the largest run that starts aligned here and fits in what is left
            level = min((size & -size).bit_length() - 1 if size else SUBTREE_MAX, SUBTREE_MAX)
            level = min(level, (n - pos).bit_length() - 1)
            run = 1 << level
            if level < SUBTREE_MIN:
                self.append(blob[pos * HASH_SIZE : (pos + 1) * HASH_SIZE])
                pos += 1
                continue
            part = blob[pos * HASH_SIZE : (pos + run) * HASH_SIZE]
            nodes = [part[i : i + HASH_SIZE] for i in range(0, len(part), HASH_SIZE)]
            while len(nodes) > 1:
                it = iter(nodes)
                nodes = [sha256(NODE_PREFIX + a + b).digest() for a, b in zip(it, it, strict=True)]
            self.append_subtree(level, nodes[0])
            pos += run

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = hashlib.sha256(NODE_PREFIX + h + r).digest()
        return r


def _hashes(*values: bytes) -> bool:
    return all(isinstance(v, bytes) and len(v) == HASH_SIZE for v in values)


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2, step for step (every hash must be 32 bytes)."""
    if not 0 <= index < size or not _hashes(leaf, root, *path):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2, step for step. Like transparency-dev's reference, a
    proof from size 0 is refused (there is nothing to prove; callers special-case it)."""
    if old_size < 1 or old_size > new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof or not _hashes(old_root, new_root, *proof):
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def inclusion_path(m: int, lo: int, hi: int, subtree: Callable[[int, int], bytes]) -> list[bytes]:
    """RFC 9162 PATH(m, D[lo:hi]), leaf-most first, from any subtree-hash source."""
    out: list[bytes] = []
    while hi - lo > 1:
        k = largest_power_of_two_below(hi - lo)
        if m < k:
            out.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            out.append(subtree(lo, lo + k))
            lo, m = lo + k, m - k
    out.reverse()
    return out


def consistency_path(m: int, n: int, subtree: Callable[[int, int], bytes]) -> list[bytes]:
    """RFC 9162 PROOF(m, D[0:n]) (SUBPROOF with b = true), 0 < m <= n."""
    if not 0 < m <= n:
        raise ValueError("a consistency proof needs 0 < old size <= new size")
    out: list[bytes] = []
    lo, hi, complete = 0, n, True
    while True:
        size = hi - lo
        if m == size:
            if not complete:
                out.append(subtree(lo, hi))
            break
        k = largest_power_of_two_below(size)
        if m <= k:
            out.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            out.append(subtree(lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    out.reverse()
    return out
