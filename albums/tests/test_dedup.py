"""albums.dedup: the hash index and the all-pairs near-duplicate join, checked
against a plain Python reference."""

from __future__ import annotations

import random
from functools import cache
from typing import Any

import numpy as np
import pytest

from albums import dedup, ingest
from albums.dedup import HashIndex, hamming, library_index, near_duplicate_pairs
from albums.tests.builders import make_image

SIGN = 1 << 63


def signed(value: int) -> int:
    """An unsigned 64-bit value as PostgreSQL's bigint stores it."""
    value &= dedup.MASK
    return value - (1 << 64) if value & SIGN else value


def flip(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return signed(value)


@cache
def planted_hashes(n: int = 400, seed: int = 7) -> tuple[int, ...]:
    """Random signed hashes plus copies of some of them at distances 0..8, one
    of which differs from its source only in the sign bit."""
    rng = random.Random(seed)
    hashes = [signed(rng.getrandbits(64)) for _ in range(n)]
    for k in range(90):
        source = rng.randrange(n)
        hashes.append(flip(hashes[source], rng.sample(range(64), k % 9)))
    hashes.append(flip(hashes[0], [63]))
    rng.shuffle(hashes)
    return tuple(hashes)


@cache
def all_distances(hashes: tuple[int, ...]) -> tuple[tuple[int, int, int], ...]:
    return tuple(
        (i, j, hamming(hashes[i], hashes[j]))
        for i in range(len(hashes))
        for j in range(i + 1, len(hashes))
    )


def reference_pairs(
    hashes: tuple[int, ...], max_distance: int
) -> list[tuple[int, int, int]]:
    return [p for p in all_distances(hashes) if p[2] <= max_distance]


# --- hamming ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(0, 0, 0), (0, 1, 1), (-1, 0, 64), (-1, 1, 63), (SIGN, -SIGN, 0), (5, -5, 63)],
)
def test_hamming_reads_signed_hashes_as_64_bits(a: int, b: int, expected: int) -> None:
    assert hamming(a, b) == expected == ingest.hamming(a, b)


# --- all pairs --------------------------------------------------------------------


@pytest.mark.parametrize("max_distance", [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 64])
def test_pairs_match_the_brute_force_reference(max_distance: int) -> None:
    hashes = planted_hashes()
    expected = reference_pairs(hashes, max_distance)

    assert near_duplicate_pairs(hashes, max_distance) == expected
    # Ten copies were planted at each distance 0..8, so the reference is no
    # vacuous empty list.
    assert len(expected) >= 10 * (min(max_distance, 8) + 1)


@pytest.mark.parametrize("max_distance", [0, 2, 4, 6, 8])
@pytest.mark.parametrize("extra_bands", [None, 0, 1, 2, 3])
def test_every_plan_finds_the_same_pairs(
    monkeypatch: Any, max_distance: int, extra_bands: int | None
) -> None:
    """Each band count the planner may pick, and brute force (None), is exact."""
    bands = None if extra_bands is None else max_distance + 1 + extra_bands
    monkeypatch.setattr(dedup, "_plan", lambda n, r: bands)
    hashes = planted_hashes()

    assert near_duplicate_pairs(hashes, max_distance) == reference_pairs(
        hashes, max_distance
    )


def test_the_planner_bands_small_radii_and_brute_forces_large_ones() -> None:
    assert dedup._plan(100_000, 4) in range(5, 9)
    assert dedup._plan(100_000, 6) in range(7, 11)
    assert dedup._plan(100_000, 40) is None


@pytest.mark.parametrize(
    "convert",
    [
        list,
        lambda h: [v & dedup.MASK for v in h],  # unsigned Python ints
        lambda h: np.array(h, dtype=np.int64),
        lambda h: np.array(h, dtype=np.int64).view(np.uint64),
    ],
    ids=["signed", "unsigned", "int64", "uint64"],
)
def test_pairs_take_hashes_in_any_64_bit_spelling(convert: Any) -> None:
    hashes = planted_hashes()

    assert near_duplicate_pairs(convert(hashes), 5) == reference_pairs(hashes, 5)


def test_identical_hashes_pair_with_each_other() -> None:
    hashes = [-42] * 30 + [signed(1 << 40)] + [-42] * 5

    pairs = near_duplicate_pairs(hashes, 3)

    same = [i for i, h in enumerate(hashes) if h == -42]
    assert pairs == [(i, j, 0) for k, i in enumerate(same) for j in same[k + 1 :]]


@pytest.mark.parametrize("hashes", [[], [7]])
def test_fewer_than_two_hashes_have_no_pairs(hashes: list[int]) -> None:
    assert near_duplicate_pairs(hashes, 6) == []


def test_a_negative_distance_is_refused() -> None:
    with pytest.raises(ValueError, match="max_distance"):
        near_duplicate_pairs([1, 2], -1)


# --- the index --------------------------------------------------------------------


def test_nearest_lists_matches_by_distance_then_id() -> None:
    query = signed(0xF0F0_0000_0000_000F)
    index = HashIndex()
    index.add(9, flip(query, [1, 2]))
    index.add(3, flip(query, [40]))
    index.add(7, query)
    index.add(5, flip(query, [63, 5]))
    index.add(1, flip(query, [0, 1, 2, 3, 4, 5, 6, 7]))
    index.add(2, flip(query, [50]))

    assert index.nearest(query, 2) == [(7, 0), (2, 1), (3, 1), (5, 2), (9, 2)]
    assert index.nearest(query, 0) == [(7, 0)]
    assert index.nearest(flip(query, list(range(30))), 6) == []


def test_nearest_matches_a_linear_scan() -> None:
    hashes = planted_hashes()
    ids = [1000 + k for k in range(len(hashes))]
    index = HashIndex(ids, hashes)

    for query in (hashes[0], hashes[17], -1, SIGN - 1):
        expected = sorted(
            (hamming(query, h), i) for i, h in zip(ids, hashes, strict=True)
        )
        assert index.nearest(query, 8) == [(i, d) for d, i in expected if d <= 8]


def test_the_sign_bit_is_one_bit_like_any_other() -> None:
    index = HashIndex([1, 2], [-1, SIGN - 1])  # all ones; all ones but bit 63

    assert index.nearest(-1, 0) == [(1, 0)]
    assert index.nearest(-1, 1) == [(1, 0), (2, 1)]
    assert index.nearest(0, 63) == [(2, 63)]


def test_an_empty_index_finds_nothing() -> None:
    index = HashIndex()

    assert len(index) == 0
    assert index.nearest(0, 64) == []


def test_adding_grows_past_the_first_capacity() -> None:
    rng = random.Random(3)
    hashes = [signed(rng.getrandbits(64)) for _ in range(5000)]
    one_by_one = HashIndex()
    for k, value in enumerate(hashes):
        one_by_one.add(k, value)
    at_once = HashIndex(range(5000), hashes)

    assert len(one_by_one) == len(at_once) == 5000
    for value in hashes[::500] + hashes[-3:]:
        assert one_by_one.nearest(value, 10) == at_once.nearest(value, 10)
        assert (hashes.index(value), 0) in one_by_one.nearest(value, 0)


def test_ids_and_hashes_go_in_pairs() -> None:
    with pytest.raises(ValueError, match="in pairs"):
        HashIndex([1, 2], [3])


# --- the library ------------------------------------------------------------------


@pytest.mark.django_db
def test_library_index_holds_every_image() -> None:
    images = [make_image(seed=seed) for seed in range(5)]

    index = library_index(chunk_size=2)

    assert len(index) == 5
    for image in images:
        assert (image.pk, 0) in index.nearest(image.phash, 0)
    first = images[0]
    expected = sorted((hamming(first.phash, im.phash), im.pk) for im in images)
    assert index.nearest(first.phash, 64) == [(pk, d) for d, pk in expected]


@pytest.mark.django_db
def test_library_index_of_an_empty_library() -> None:
    assert len(library_index()) == 0
