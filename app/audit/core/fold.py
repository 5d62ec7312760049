"""The one fold over leaves and checkpoints, in log order, that every verifier
drives."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .checkpoints import Checkpoint, CheckpointChain
from .hashing import EMPTY_ROOT, Frontier, verify_consistency
from .notes import KeyRing
from .report import Damage, Report


@dataclass(frozen=True)
class Trusted:
    """A checkpoint the auditor kept: the log must still extend it."""

    tree_size: int
    root: bytes
    index: int | None = None


class Fold:
    """The one fold over leaves and checkpoints, in log order, that every verifier
    (database, export) drives: leaves extend the frontier; each checkpoint must
    follow the chain, name the current size and sign the current root; a trusted
    checkpoint must be met on the way (or proven by a consistency proof). Memory:
    one frontier, the last checkpoint."""

    def __init__(
        self,
        keys: KeyRing,
        *,
        origin: str | None = None,
        frontier: Frontier | None = None,
        trusted: Trusted | None = None,
    ) -> None:
        self.chain = CheckpointChain(keys, origin)
        self.frontier = frontier or Frontier()
        self.start = self.frontier.size
        self.covered = self.frontier.size
        self.trusted = trusted
        self.trusted_met = trusted is None or (
            trusted.tree_size == 0 and trusted.root == EMPTY_ROOT
        )
        self.report_checkpoints = 0
        self.last_time: str | None = None

    @property
    def size(self) -> int:
        return self.frontier.size

    def leaf(self, h: bytes) -> None:
        self.frontier.append(h)

    def leaves(self, blob: bytes) -> None:
        self.frontier.extend_blob(blob)

    def at_size(self) -> None:
        """Called when the frontier reaches the trusted checkpoint's size."""
        t = self.trusted
        if t is not None and not self.trusted_met and t.tree_size == self.frontier.size:
            if self.frontier.root() != t.root:
                raise Damage(
                    "fork",
                    f"the log's root at size {t.tree_size} differs from the trusted checkpoint's:"
                    " this log does not extend it",
                    t.tree_size,
                )
            self.trusted_met = True

    def checkpoint(self, cp: Checkpoint) -> None:
        self.chain.add(cp)
        size = self.frontier.size
        if cp.tree_size != size:
            if cp.tree_size > size:
                raise Damage(
                    "tail_missing",
                    f"checkpoint {cp.index} covers {cp.tree_size} events but the log ends "
                    f"after {size}: events {size}..{cp.tree_size - 1} are missing",
                    size,
                )
            raise Damage(
                "checkpoint_inconsistent",
                f"checkpoint {cp.index} is out of order (covers {cp.tree_size} events, "
                f"{size} read)",
                cp.tree_size,
            )
        if cp.root != self.frontier.root():
            raise Damage(
                "root_mismatch",
                f"checkpoint {cp.index} signs a root that events {self.covered}.."
                f"{cp.tree_size - 1} do not produce: one of them was changed, inserted, "
                "removed or reordered",
                self.covered,
            )
        self.covered = size
        self.report_checkpoints += 1
        self.last_time = cp.time

    def consistency(self, old_size: int, proof: list[bytes], cp: Checkpoint) -> None:
        """A consistency proof from the trusted checkpoint to checkpoint `cp` (for an
        export starting after it)."""
        t = self.trusted
        if t is None or self.trusted_met or old_size != t.tree_size:
            return
        if not verify_consistency(t.tree_size, cp.tree_size, t.root, cp.root, proof):
            raise Damage(
                "fork",
                f"the consistency proof from size {t.tree_size} to checkpoint {cp.index} "
                "fails: this log does not extend the trusted checkpoint",
                t.tree_size,
            )
        self.trusted_met = True

    def finish(self, rep: Report, *, need_checkpoint: bool = True) -> None:
        size = self.frontier.size
        if size > self.covered:
            raise Damage(
                "event_uncovered",
                f"events {self.covered}..{size - 1} are not covered by any signed checkpoint"
                " (inserted after sealing?)",
                self.covered,
            )
        if need_checkpoint and self.chain.count == 0:
            raise Damage("malformed", "no checkpoint")
        t = self.trusted
        if t is not None and not self.trusted_met:
            if t.tree_size > size:
                raise Damage(
                    "tail_missing",
                    f"the trusted checkpoint covers {t.tree_size} events but this log ends "
                    f"after {size}: it was truncated or rolled back",
                    size,
                )
            raise Damage(
                "fork",
                f"nothing shows that this log extends the trusted checkpoint of "
                f"{t.tree_size} events (no consistency proof from it)",
                t.tree_size,
            )
        rep.checkpoints = self.report_checkpoints
        rep.last_checkpoint_time = self.last_time
        rep.root = self.frontier.root()
        rep.tree_size = size


def fold_blobs(
    fold: Fold,
    blobs: Iterable[bytes],
    checkpoints: Iterator[Checkpoint],
    progress: Callable[[int], None] | None = None,
) -> Checkpoint | None:
    """Drive the fold with leaf hashes (concatenated, in seq order) and checkpoints
    (in index order): each checkpoint is checked when the tree reaches its size.
    Returns the first checkpoint beyond the leaves (a tail went missing) or None."""
    cp = next(checkpoints, None)
    trusted_size = fold.trusted.tree_size if fold.trusted and not fold.trusted_met else -1

    def reach() -> None:
        nonlocal cp
        size = fold.size
        if size == trusted_size:
            fold.at_size()
        while cp is not None and cp.tree_size <= size:
            fold.checkpoint(cp)
            cp = next(checkpoints, None)

    reach()
    for blob in blobs:
        pos = 0
        while pos < len(blob):
            # stop at the next size something must be checked at
            targets = [t for t in (cp.tree_size if cp else -1, trusted_size) if t > fold.size]
            stop = min(targets) if targets else -1
            take = len(blob) - pos if stop < 0 else min(len(blob) - pos, (stop - fold.size) * 32)
            fold.leaves(blob[pos : pos + take])
            pos += take
            reach()
        if progress is not None:
            progress(fold.size)
    return cp
