"""Fixed log-scale latency bins: four per doubling, from 1/64 ms to about 17 minutes.

Bins are fixed for every key and period, so histograms add up across workers, minutes,
hours and days, and a percentile can be read from any sum of them. A percentile is
reported as the upper edge of the bin that holds it, so it never under-states: the
true value v (nearest-rank) and the report r satisfy v < r <= 2**(1/4) * v, i.e. at
most 19 % high, for every v >= 1/64 ms (below that, r is 1/64 ms).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

BINS_PER_OCTAVE = 4
LOWEST_EXP = -6  # 2**-6 ms = 15.6 microseconds: the upper edge of bin 0
HIGHEST_EXP = 20  # 2**20 ms, about 17.5 minutes: everything slower shares the last bin
LAST_BIN = (HIGHEST_EXP - LOWEST_EXP) * BINS_PER_OCTAVE
MAX_ERROR = 2 ** (1 / BINS_PER_OCTAVE)  # a reported percentile is at most this factor high


def bin_of(ms: float) -> int:
    """The bin a latency falls into; bin b >= 1 covers [edge(b-1), edge(b))."""
    if not ms > 2.0**LOWEST_EXP:  # also catches NaN and negatives
        return 0
    if ms >= 2.0**HIGHEST_EXP:  # also catches infinity
        return LAST_BIN
    b = math.floor((math.log2(ms) - LOWEST_EXP) * BINS_PER_OCTAVE) + 1
    return min(max(b, 1), LAST_BIN)


def upper_edge(b: int) -> float:
    """Upper bound of bin b in ms (the last bin is open-ended; its lower edge is used)."""
    b = min(max(b, 0), LAST_BIN)
    return 2.0 ** (LOWEST_EXP + b / BINS_PER_OCTAVE)


def quantile(bins: Mapping[int, int], q: float) -> float | None:
    """Nearest-rank q-quantile (0 < q <= 1) of a histogram, or None when it is empty."""
    total = sum(bins.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for b in sorted(bins):
        seen += bins[b]
        if seen >= rank:
            return upper_edge(b)
    return upper_edge(max(bins))
