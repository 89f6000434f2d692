"""Near-duplicate search over 64-bit perceptual hashes.

Hashes are the signed 64-bit integers `albums.ingest.perceptual_hash` stores
(PostgreSQL has no unsigned bigint); here they are viewed as uint64, so the sign
bit is just bit 63. Two tools, both plain numpy (perf-reliability §2, A7–A10):

- `HashIndex.nearest`: one query against everything, by vectorised XOR and
  popcount. Brute force is ~1 ms at 1M hashes, faster than any tree at the
  radii we use, and appends are O(1), so the crawler adds each image it keeps.
- `near_duplicate_pairs`: every pair within a distance, by multi-index hashing
  (pigeonhole on bands of bits) instead of the n² comparisons.

Albums owns this because it owns `Image.phash`: the scraper asks it about the
library, the dataset builder about the system's own generations.

Django is imported only inside the functions that read the library, so the
benchmark and the scraper's worker threads can use the rest without settings.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from itertools import combinations

import numpy as np

logger = logging.getLogger(__name__)

BITS = 64
MASK = (1 << BITS) - 1
_INITIAL_CAPACITY = 1024
_QUERY_SLICE = 1 << 16  # 512 KiB of hashes
# Rough costs per unit on one core, from bench/dedup.py: sorting one key, checking
# one candidate pair from a shared band, and one brute-force comparison.
_SORT_COST = 50e-9
_CANDIDATE_COST = 18e-9
_BRUTE_COST = 6e-9
_BRUTE_BLOCK = 1 << 22  # elements in one brute-force XOR matrix (32 MiB)
# Bits of 64 within which an image "looks like" a generated one: the scraper's
# default near-duplicate radius.
LOOKALIKE_DISTANCE = 6


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes, signed or not."""
    return ((a ^ b) & MASK).bit_count()


def as_uint64(hashes: Sequence[int] | np.ndarray) -> np.ndarray:
    """The hashes as a uint64 array (a view when they already are int64/uint64)."""
    if isinstance(hashes, np.ndarray) and hashes.dtype in (np.int64, np.uint64):
        return hashes.view(np.uint64)
    try:
        return np.asarray(hashes, dtype=np.int64).view(np.uint64)
    except OverflowError:  # unsigned values at or above 2**63
        return np.array([int(h) & MASK for h in hashes], dtype=np.uint64)


class HashIndex:
    """Item ids and their hashes in two growable numpy arrays.

    Not safe for an `add` racing a `nearest` in another thread: the pipeline
    checks and adds from one place.
    """

    def __init__(self, ids: Sequence[int] = (), hashes: Sequence[int] = ()) -> None:
        self._ids = np.empty(_INITIAL_CAPACITY, dtype=np.int64)
        self._hashes = np.empty(_INITIAL_CAPACITY, dtype=np.uint64)
        self._size = 0
        self.extend(ids, hashes)

    def __len__(self) -> int:
        return self._size

    def add(self, item_id: int, phash: int) -> None:
        """Append one hash (amortised O(1): the arrays double when full)."""
        self._reserve(self._size + 1)
        self._ids[self._size] = item_id
        self._hashes[self._size] = phash & MASK
        self._size += 1

    def extend(
        self, ids: Sequence[int] | np.ndarray, hashes: Sequence[int] | np.ndarray
    ) -> None:
        """Append many hashes at once."""
        id_array = np.asarray(ids, dtype=np.int64).reshape(-1)
        hash_array = as_uint64(hashes).reshape(-1)
        if id_array.size != hash_array.size:
            raise ValueError(
                f"{id_array.size} ids but {hash_array.size} hashes; they go in pairs."
            )
        end = self._size + id_array.size
        self._reserve(end)
        self._ids[self._size : end] = id_array
        self._hashes[self._size : end] = hash_array
        self._size = end

    def nearest(self, phash: int, max_distance: int) -> list[tuple[int, int]]:
        """Every (id, distance) within `max_distance` bits of `phash`, nearest
        first, ties by id."""
        query = np.uint64(phash & MASK)
        hits, found = [], []
        # Slices that stay in the CPU cache: on a busy machine this keeps p99
        # near p50 (~2 ms at 1M), where one pass over 8 MB spikes to 8-15 ms.
        for start in range(0, self._size, _QUERY_SLICE):
            stop = min(start + _QUERY_SLICE, self._size)
            distances = np.bitwise_count(self._hashes[start:stop] ^ query)
            near = np.flatnonzero(distances <= max_distance)
            if near.size:
                hits.append(near + start)
                found.append(distances[near])
        if not hits:
            return []
        ids, distances = self._ids[np.concatenate(hits)], np.concatenate(found)
        order = np.lexsort((ids, distances))
        return list(zip(ids[order].tolist(), distances[order].tolist(), strict=True))

    def _reserve(self, needed: int) -> None:
        capacity = self._ids.size
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2
        self._ids = _grown(self._ids, capacity, self._size)
        self._hashes = _grown(self._hashes, capacity, self._size)


def _grown(array: np.ndarray, capacity: int, used: int) -> np.ndarray:
    bigger = np.empty(capacity, dtype=array.dtype)
    bigger[:used] = array[:used]
    return bigger


def library_index(*, chunk_size: int = 50_000) -> HashIndex:
    """Every image in the library as an index of (image id, phash).

    Read in keyset chunks (`id > last ORDER BY id LIMIT n`, each a range scan
    of the primary key) rather than one cursor, so no server-side cursor and
    no million-row result set is held at once.
    """
    from albums.models import Image

    index, last = HashIndex(), 0
    while True:
        rows = list(
            Image.objects.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", "phash")[:chunk_size]
        )
        if not rows:
            break
        pairs = np.array(rows, dtype=np.int64)
        index.extend(pairs[:, 0], pairs[:, 1])
        last = rows[-1][0]
        if len(rows) < chunk_size:
            break
    return index


def generated_phash_index() -> HashIndex:
    """The perceptual hashes of every generated image, for near-duplicate checks."""
    from albums.models import Image, SourceKind

    rows = list(
        Image.objects.filter(source_kind=SourceKind.GENERATED).values_list(
            "pk", "phash"
        )
    )
    return HashIndex([pk for pk, _ in rows], [h for _, h in rows])


def generated_lookalikes(
    image_ids: Sequence[int], *, max_distance: int = LOOKALIKE_DISTANCE
) -> dict[int, int]:
    """{image id: the nearest generated image's id} for the given images that are
    within `max_distance` bits of a generated image. A generated image maps to
    itself: training on it is training on the system's own output too."""
    from albums.models import Image, SourceKind

    index = generated_phash_index()
    if not len(index):
        return {}
    found: dict[int, int] = {}
    ids = list(dict.fromkeys(image_ids))
    for start in range(0, len(ids), 500):  # stay under SQLite's variable limit
        rows = Image.objects.filter(pk__in=ids[start : start + 500]).values_list(
            "pk", "phash", "source_kind"
        )
        for pk, phash, kind in rows:
            if kind == SourceKind.GENERATED:
                found[pk] = pk
            elif hits := index.nearest(phash, max_distance):
                found[pk] = hits[0][0]
    return found


# --- all pairs --------------------------------------------------------------------


def near_duplicate_pairs(
    hashes: Sequence[int] | np.ndarray, max_distance: int
) -> list[tuple[int, int, int]]:
    """Every pair of positions (i, j, distance) with i < j and distance <=
    `max_distance`, sorted by (i, j). Exact: no pair is missed.

    Multi-index hashing: cut the 64 bits into m bands. A pair within r bits
    differs in at most r bands, so it agrees exactly on at least m - r of them;
    grouping the hashes by every choice of m - r bands finds each such pair as
    candidates, which a popcount then checks. m = r + 1 is the classic
    pigeonhole (one shared band); a larger m costs more groupings but far fewer
    candidates. The plan picks the m with the lowest estimated cost, or plain
    blocked brute force when r is so large that no banding pays off.
    """
    if max_distance < 0:
        raise ValueError("max_distance must be 0 or more.")
    values = as_uint64(hashes).reshape(-1)
    n = values.size
    if n < 2:
        return []
    bands = _plan(n, max_distance)
    if bands is None:
        found = _brute_force_pairs(values, max_distance)
    else:
        found = _banded_pairs(values, max_distance, bands)
    return _unique_sorted(found, n)


def _band_masks(bands: int) -> list[int]:
    """`bands` contiguous bit ranges covering all 64 bits, as even as possible."""
    base, extra = divmod(BITS, bands)
    masks, start = [], 0
    for b in range(bands):
        width = base + (1 if b < extra else 0)
        masks.append(((1 << width) - 1) << start)
        start += width
    return masks


def _combo_masks(bands: int, max_distance: int) -> list[int]:
    """One mask per choice of (bands - max_distance) bands: the bits a
    candidate pair must share under that choice."""
    shared = bands - max_distance
    return [sum(c) for c in combinations(_band_masks(bands), shared)]


def _plan(n: int, max_distance: int) -> int | None:
    """The band count with the lowest estimated cost on uniform random hashes,
    or None when brute force is cheaper (large radii, or tiny inputs)."""
    pairs = n * (n - 1) / 2
    best, best_cost = None, pairs * _BRUTE_COST
    for bands in range(max_distance + 1, min(max_distance + 4, BITS) + 1):
        if math.comb(bands, max_distance) > 500:
            break  # too many groupings; a larger m has more still
        combos = _combo_masks(bands, max_distance)
        candidates = sum(pairs / 2 ** int(m).bit_count() for m in combos)
        cost = len(combos) * n * _SORT_COST + candidates * _CANDIDATE_COST
        if cost < best_cost:
            best, best_cost = bands, cost
    return best


def _banded_pairs(
    values: np.ndarray, max_distance: int, bands: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    for mask in _combo_masks(bands, max_distance):
        for a, b in _same_key_pairs(values & np.uint64(mask)):
            distance = np.bitwise_count(values[a] ^ values[b])
            near = distance <= max_distance
            yield a[near], b[near], distance[near]


def _same_key_pairs(keys: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every pair of positions whose keys are equal, in slices of at most n.

    After sorting, members of a group are adjacent: pair each position with the
    one k places on, for k = 1, 2, ... while any group is still longer than k.
    The work is the number of pairs plus n, whatever the group sizes.
    """
    order = np.argsort(keys)
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, keys.size])
    group_end = np.repeat(starts + sizes, sizes)
    active = np.flatnonzero(group_end - np.arange(keys.size) > 1)
    step = 1
    while active.size:
        yield order[active], order[active + step]
        step += 1
        active = active[group_end[active] - active > step]


def _brute_force_pairs(
    values: np.ndarray, max_distance: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Blocks of rows against every later hash, a bounded matrix at a time."""
    n = values.size
    block = max(1, _BRUTE_BLOCK // n)
    for start in range(0, n - 1, block):
        rows = values[start : start + block]
        distance = np.bitwise_count(rows[:, None] ^ values[None, start:])
        r, c = np.nonzero(distance <= max_distance)
        later = c > r  # column c is position start + c; keep the upper triangle
        r, c = r[later], c[later]
        yield r + start, c + start, distance[r, c]


def _unique_sorted(
    found: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]], n: int
) -> list[tuple[int, int, int]]:
    """Merge the slices, order each pair (i < j), drop repeats (a pair sharing
    several band choices is found once per choice), sort by (i, j)."""
    parts = list(found)
    if not parts:
        return []
    a = np.concatenate([p[0] for p in parts]).astype(np.int64)
    b = np.concatenate([p[1] for p in parts]).astype(np.int64)
    distance = np.concatenate([p[2] for p in parts])
    key = np.minimum(a, b) * n + np.maximum(a, b)
    key, first = np.unique(key, return_index=True)
    i, j = np.divmod(key, n)
    return list(zip(i.tolist(), j.tolist(), distance[first].tolist(), strict=True))
