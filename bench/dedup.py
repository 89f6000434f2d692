"""Benchmarks (run by hand or `make bench`): near-duplicate search on 64-bit hashes.

Plain numpy, no database. Prints figures; asserts nothing. Targets from the
scraping issue:
  - all pairs within 4 and within 6 bits over 100k hashes (1% planted
    near-duplicates): <= 1 s;
  - one `HashIndex.nearest` lookup against 1M hashes: <= 5 ms (p50 and p99
    over 200 lookups), and the time to build that index.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from albums.dedup import HashIndex, near_duplicate_pairs  # noqa: E402


def planted_hashes(n: int, rng: np.random.Generator) -> np.ndarray:
    """n random signed hashes where 1% are copies of others with 0–8 bits flipped."""
    hashes = rng.integers(-(2**63), 2**63, size=n, dtype=np.int64)
    unsigned = hashes.view(np.uint64)
    copies = n // 100
    sources = rng.integers(0, n, size=copies)
    targets = rng.choice(n, size=copies, replace=False)
    for source, target in zip(sources, targets, strict=True):
        flips = rng.choice(64, size=rng.integers(0, 9), replace=False)
        noise = np.bitwise_or.reduce(np.uint64(1) << flips.astype(np.uint64))
        unsigned[target] = unsigned[source] ^ (noise if flips.size else np.uint64(0))
    return hashes


def bench_pairs(n: int, distances: list[int], rng: np.random.Generator) -> None:
    hashes = planted_hashes(n, rng)
    for max_distance in distances:
        near_duplicate_pairs(hashes[:1000], max_distance)  # warm up
        started = time.perf_counter()
        pairs = near_duplicate_pairs(hashes, max_distance)
        elapsed = time.perf_counter() - started
        print(
            f"  all pairs within {max_distance} over {n:,} hashes: {elapsed:.3f} s, "
            f"{len(pairs):,} pairs (target <= 1 s)"
        )


def bench_nearest(n: int, lookups: int, rng: np.random.Generator) -> None:
    hashes = planted_hashes(n, rng)
    ids = np.arange(1, n + 1, dtype=np.int64)
    started = time.perf_counter()
    index = HashIndex(ids, hashes)
    built = time.perf_counter() - started
    started = time.perf_counter()
    grown = HashIndex()
    some = 100_000
    for item_id, value in zip(ids[:some].tolist(), hashes[:some].tolist(), strict=True):
        grown.add(item_id, value)
    added = (time.perf_counter() - started) / some
    print(
        f"  index of {n:,} hashes built in {built * 1000:.1f} ms; "
        f"add() one at a time {added * 1e6:.2f} µs each"
    )
    queries = hashes[rng.integers(0, n, size=lookups)].tolist()
    timings = []
    for query in queries:
        started = time.perf_counter()
        index.nearest(query, 6)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    print(
        f"  nearest within 6 against {n:,}: {lookups} lookups; "
        f"p50 {statistics.median(timings):.2f} ms; p99 {p99:.2f} ms; "
        f"max {timings[-1]:.2f} ms (target <= 5 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--index", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(20)
    print(
        f"Python {sys.version.split()[0]}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPU(s)"
    )
    bench_pairs(args.pairs, [4, 6], rng)
    bench_nearest(args.index, args.lookups, rng)


if __name__ == "__main__":
    main()
