"""Near-duplicate detection: MinHash signatures, LSH banding, and clusters that persist across days.

Texts are normalized (lower case, words), cut into k-word shingles, and each shingle is hashed once; the
128 MinHash permutations are multiply-shift hashes evaluated for a whole batch at a time with numpy, which
is what makes this fast enough for millions of prompts. LSH splits a signature into b bands of r rows
(chosen for the threshold, as datasketch does); texts sharing a band's bucket are candidates, and a
candidate pair is a match when its estimated Jaccard similarity reaches the threshold.

Across days: clusters are recomputed from every day in staging at once (`build_clusters`), one sketch per
distinct normalized prompt, so the result depends on the data and not on which days were built in which
order, and nothing but the clusters is stored. A cluster's id is the request_id of its earliest member, so it
stays stable as the cluster grows; when new data links two clusters, the merged one takes the older id.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import duckdb
import numpy as np
import pyarrow as pa

from flywheel.warehouse import create, transaction, writing


@dataclass(frozen=True)
class DedupConfig:
    threshold: float = 0.8
    num_perm: int = 128
    shingle_words: int = 5
    seed: int = 1

    @property
    def bands(self) -> tuple[int, int]:
        return optimal_bands(self.threshold, self.num_perm)


@cache
def optimal_bands(threshold: float, num_perm: int, weights: tuple[float, float] = (0.1, 0.9)) -> tuple[int, int]:
    """(bands, rows) minimizing the weighted false-positive and false-negative areas, as datasketch does.

    False negatives weigh more by default: a missed pair is lost for good, while every candidate is verified
    (exactly where it is close to the threshold), so an extra candidate only costs a comparison.
    """
    grid = np.linspace(0, 1, 201)
    best, best_error = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            probability = 1 - (1 - grid**rows) ** bands
            false_pos = np.trapezoid(probability[grid < threshold], grid[grid < threshold])
            false_neg = np.trapezoid(1 - probability[grid >= threshold], grid[grid >= threshold])
            error = weights[0] * false_pos + weights[1] * false_neg
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


# ASCII punctuation becomes space and letters lower case, so that "Time." and "time" are one word
# (bytes.translate over the whole batch at once, in C).
_NORMALIZE = bytes(
    32 if chr(c) in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" else ord(chr(c).lower()) if c < 128 else c
    for c in range(256)
)
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[list(b" \t\n\r\x0b\x0c")] = True
CHUNK_CHARS = 1_000_000
SKETCH_THREADS = 2
_WORD_BASE = np.uint64(2_000_000_015)  # odd, so it has an inverse mod 2**64
_WORD_BASE_INVERSE = np.uint64(pow(2_000_000_015, -1, 1 << 64))


class MinHasher:
    def __init__(self, config: DedupConfig = DedupConfig()) -> None:
        self.config = config
        rng = np.random.default_rng(config.seed)
        self._a = (rng.integers(1, 1 << 63, config.num_perm, dtype=np.uint64) | np.uint64(1))  # odd multipliers
        self._b = rng.integers(0, 1 << 63, config.num_perm, dtype=np.uint64)
        k = config.shingle_words
        self._powers = np.array([pow(1_000_003, k - 1 - j, 1 << 64) for j in range(k)], dtype=np.uint64)
        bands, rows = config.bands
        self._band_mult = rng.integers(1, 1 << 63, (bands, rows), dtype=np.uint64)
        self.signature_mult = rng.integers(1, 1 << 63, config.num_perm, dtype=np.uint64)  # one key per signature
        self._powers_cache = (np.ones(1, np.uint64), np.ones(1, np.uint64))

    def word_hashes(self, texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """A 64-bit hash of every word of a batch of texts, with the index of the text each belongs to.

        The batch is one bytes object: ASCII punctuation becomes space, ASCII letters lower case, words are runs
        of non-whitespace. A word's hash is its polynomial hash, taken from prefix sums over the whole batch at
        once (mod 2**64: a difference of prefixes times the inverse power at the word's start), so no Python
        object is made per word and the work runs in numpy, which releases the GIL.
        """
        encoded = [(t or "").encode() for t in texts]
        lengths = np.fromiter((len(e) for e in encoded), np.int64, len(encoded))
        data = np.frombuffer(b" ".join(encoded).translate(_NORMALIZE), np.uint8)
        if not len(data):
            return np.empty(0, np.uint64), np.empty(0, np.int64)
        space = _WHITESPACE[data]
        start = np.flatnonzero(~space & np.r_[True, space[:-1]])
        end = np.flatnonzero(~space & np.r_[space[1:], True]) + 1
        powers, inverse = self._word_powers(len(data) + 1)
        prefix = np.zeros(len(data) + 1, np.uint64)
        np.cumsum((data.astype(np.uint64) + np.uint64(1)) * powers[:-1], out=prefix[1:])
        text_start = np.r_[0, np.cumsum(lengths + 1)[:-1]]
        owner = np.searchsorted(text_start, start, side="right") - 1
        return (prefix[end] - prefix[start]) * inverse[start], owner

    def _word_powers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """BASE**j and BASE**-j mod 2**64 for j < n, computed once and grown on demand (shared by threads:
        a larger pair replaces the old one whole)."""
        powers, inverse = self._powers_cache
        if len(powers) < n:
            size = max(n, 2 * len(powers))
            powers = np.cumprod(np.r_[np.uint64(1), np.full(size - 1, _WORD_BASE, np.uint64)])
            inverse = np.cumprod(np.r_[np.uint64(1), np.full(size - 1, _WORD_BASE_INVERSE, np.uint64)])
            self._powers_cache = (powers, inverse)
        return powers[:n], inverse[:n]

    def shingles(self, texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """Hashes of every k-word shingle of a batch of texts, with the index of the text each belongs to.

        Shingles are rolling sums of word hashes over the whole batch at once, keeping only the windows that
        stay inside one text. A text shorter than k words is one shingle of all its words (an empty text has
        none).
        """
        k = self.config.shingle_words
        word_hash, owner = self.word_hashes(texts)
        lengths = np.bincount(owner, minlength=len(texts)).astype(np.int64)
        parts, owners = [], []
        if len(word_hash) >= k:
            n = len(word_hash) - k + 1
            rolling = word_hash[:n] * self._powers[0]  # sum of k shifted products: contiguous, no window copies
            for j in range(1, k):
                rolling += word_hash[j:j + n] * self._powers[j]
            inside = owner[:n] == owner[k - 1:]
            parts.append(rolling[inside] >> np.uint64(16))  # 48-bit shingle hashes
            owners.append(owner[:n][inside])
        short = np.nonzero((lengths > 0) & (lengths < k))[0]
        if len(short):
            starts = np.r_[0, np.cumsum(lengths)[:-1]]
            parts.append(np.array([(word_hash[starts[i]:starts[i] + lengths[i]] * self._powers[k - lengths[i]:]).sum()
                                   for i in short], dtype=np.uint64) >> np.uint64(16))
            owners.append(short)
        if not parts:
            return np.empty(0, np.uint64), np.empty(0, np.int64)
        return np.concatenate(parts), np.concatenate(owners)

    def sketch(self, texts: list[str | None], chunk_docs: int = 5_000, workers: int = 1
               ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Signatures, and each text's exact set of shingle hashes (sorted), for exact comparisons.

        `workers` > 1 sketches chunks on that many threads: the work is numpy's, which releases the GIL, so
        threads scale without the start-up cost and fork hazards of processes.
        """
        if chunk_docs >= 1 << 16:
            raise ValueError("chunk_docs must stay below 65,536 (text indexes are packed into 16 bits)")
        # Chunks of about CHUNK_CHARS characters: long texts in smaller chunks keep the per-chunk arrays in cache.
        average = sum(len(t) for t in texts if t) / max(1, len(texts))
        size = max(100, min(chunk_docs, int(CHUNK_CHARS / max(average, 1.0))))
        if workers > 1:
            size = max(100, min(size, -(-len(texts) // (2 * workers))))
        chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
        if workers > 1 and len(chunks) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(self._sketch_chunk, chunks))
        else:
            parts = [self._sketch_chunk(chunk) for chunk in chunks]
        if not parts:
            return np.empty((0, self.config.num_perm), np.uint32), []
        return np.concatenate([p[0] for p in parts]), [s for p in parts for s in p[1]]

    def _sketch_chunk(self, batch: list[str | None]) -> tuple[np.ndarray, list[np.ndarray]]:
        flat, owner = self.shingles(batch)
        signatures = self._one_permutation(flat, owner, len(batch))
        # shingle hashes have 48 bits and a chunk's text index 16: one sort of (text, shingle) packed
        packed = np.sort((owner.astype(np.uint64) << np.uint64(48)) | flat)  # (np.unique hashes: slower)
        packed = packed[np.r_[True, packed[1:] != packed[:-1]]] if len(packed) else packed
        owner, flat = (packed >> np.uint64(48)).astype(np.int64), packed & np.uint64((1 << 48) - 1)
        return signatures, np.split(flat, np.searchsorted(owner, np.arange(1, len(batch))))

    def signatures(self, texts: list[str | None], chunk_docs: int = 5_000) -> np.ndarray:
        """One MinHash signature (num_perm uint32 values) per text, by one-permutation hashing.

        Each shingle is hashed once (multiply-shift, 64 bits); its top bits pick one of num_perm bins and the
        rest is its value; a bin keeps its minimum. Empty bins borrow from the next non-empty bin to the
        right (rotation densification), which keeps the chance that two signatures agree in a bin equal to
        the texts' Jaccard similarity. Cost: one hash per shingle instead of num_perm.
        """
        out = np.empty((len(texts), self.config.num_perm), dtype=np.uint32)
        for start in range(0, len(texts), chunk_docs):
            batch = texts[start:start + chunk_docs]
            out[start:start + len(batch)] = self._one_permutation(*self.shingles(batch), len(batch))
        return out

    def _one_permutation(self, flat: np.ndarray, doc: np.ndarray, n_docs: int) -> np.ndarray:
        m = self.config.num_perm
        bits = int(m).bit_length() - 1
        if 1 << bits != m:
            raise ValueError("num_perm must be a power of two for one-permutation hashing")
        hashed = flat * self._a[0] + self._b[0]
        bins = (hashed >> np.uint64(64 - bits)).astype(np.int64)
        values = ((hashed >> np.uint64(64 - bits - 32)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        empty = np.uint32(0xFFFFFFFF)
        signature = np.full((n_docs, m), empty, dtype=np.uint32)
        # the minimum per (text, bin): sort on (cell, value) packed in one integer, keep each cell's first
        cell = doc * m + bins
        packed = np.sort((cell.astype(np.uint64) << np.uint64(32)) | values.astype(np.uint64))
        cells = (packed >> np.uint64(32)).astype(np.int64)
        first = np.r_[True, cells[1:] != cells[:-1]]
        signature.reshape(-1)[cells[first]] = (packed[first] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        missing = signature == empty
        if missing.any():
            # for each bin, the nearest filled bin at or to the right of it (circularly), and how far it is
            doubled = np.concatenate([~missing, ~missing], axis=1)
            index = np.where(doubled, np.arange(2 * m)[None, :], 2 * m)
            nearest = np.minimum.accumulate(index[:, ::-1], axis=1)[:, ::-1][:, :m]
            rows, gaps = np.nonzero(missing)
            source = nearest[rows, gaps]
            filled = source < 2 * m  # a text with no shingles at all keeps the empty signature
            rows, gaps, source = rows[filled], gaps[filled], source[filled]
            offset = (source - gaps).astype(np.uint32)
            signature[rows, gaps] = signature[rows, source % m] + offset * np.uint32(0x9E3779B1)
        return signature

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """Bucket key of each band of each signature: shape (texts, bands)."""
        bands, rows = self.config.bands
        banded = signatures[:, : bands * rows].astype(np.uint64).reshape(len(signatures), bands, rows)
        return (banded * self._band_mult[None, :, :]).sum(axis=2)


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of signature rows a[i] and b[i]."""
    return (a == b).mean(axis=-1)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = len(np.union1d(a, b))
    return len(np.intersect1d(a, b, assume_unique=True)) / union if union else 1.0


def pair_similarity(sig_a: np.ndarray, sig_b: np.ndarray, sets_a: list, sets_b: list, threshold: float,
                    margin: float = 0.2) -> np.ndarray:
    """Similarity of each pair: the signatures' estimate, made exact (from the shingle sets, where both are
    known) for the pairs whose estimate is within `margin` of the threshold, where the estimate may err."""
    estimate = similarity(sig_a, sig_b)
    for n in np.flatnonzero(np.abs(estimate - threshold) < margin):
        a, b = sets_a[n], sets_b[n]
        if a is not None and b is not None:
            estimate[n] = jaccard(a, b)
    return estimate


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def candidate_pairs(keys: np.ndarray) -> np.ndarray:
    """Index pairs (i, j), i < j, that share at least one band bucket (each bucket linked as a star)."""
    pairs = []
    for band in range(keys.shape[1]):
        column = keys[:, band]
        order = np.argsort(column, kind="stable")
        sorted_keys = column[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        sizes = np.diff(np.r_[starts, len(order)])
        for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
            members = order[start:start + size]
            pairs.append(np.stack([np.full(size - 1, members[0]), members[1:]], axis=1))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.sort(np.concatenate(pairs), axis=1), axis=0)


def cluster(ids: list[str], signatures: np.ndarray, hasher: MinHasher,
            sets: list[np.ndarray | None] | None = None) -> dict[str, str]:
    """Cluster one batch on its own: id -> cluster root (the smallest id of its component).

    Texts with identical signatures (exact repeats, common in production traffic) are grouped first, so LSH
    and the pair checks run once per distinct signature.
    """
    groups = _UnionFind()
    if not ids:
        return {}
    row_keys = signatures.astype(np.uint64) @ hasher.signature_mult
    _, first, inverse = np.unique(row_keys, return_index=True, return_inverse=True)
    for n, representative in enumerate(inverse.tolist()):
        if first[representative] != n:
            groups.union(ids[n], ids[first[representative]])
    distinct = signatures[first]
    sets = sets or [None] * len(ids)
    pairs = candidate_pairs(hasher.band_keys(distinct))
    if len(pairs):
        rows_a, rows_b = first[pairs[:, 0]], first[pairs[:, 1]]
        scores = pair_similarity(signatures[rows_a], signatures[rows_b], [sets[i] for i in rows_a],
                                 [sets[j] for j in rows_b], hasher.config.threshold)
        for a, b in zip(rows_a[scores >= hasher.config.threshold].tolist(),
                        rows_b[scores >= hasher.config.threshold].tolist(), strict=True):
            groups.union(ids[a], ids[b])
    return {i: groups.find(i) for i in ids}


DEDUP_DDL = """
CREATE SCHEMA IF NOT EXISTS dedup;
-- Tables of the day-by-day matching this replaced: signatures and buckets are recomputed, not stored.
DROP TABLE IF EXISTS dedup.signatures;
DROP TABLE IF EXISTS dedup.lsh_index;
DROP TABLE IF EXISTS dedup.settings;
"""


@dataclass(frozen=True)
class ClusterResult:
    interactions: int
    distinct_prompts: int
    clusters: int
    multi_member_clusters: int


def build_clusters(con: duckdb.DuckDBPyConnection, hasher: MinHasher) -> ClusterResult:
    """Give every interaction in staging its near-duplicate cluster, from all days at once.

    The result is a function of the interactions alone, never of the order days were built in: prompts that
    normalize alike (same `prompt_hash`) are one text, sketched once, in `prompt_hash` order; clusters are the
    connected components of matching texts; a cluster's id is the request_id of its earliest member (by ts,
    then request_id), so it stays stable as later days join it. An interaction with no prompt text is a
    cluster of its own. `dedup.clusters` is replaced whole in one transaction.
    """
    create(con, DEDUP_DDL)
    prompts = con.execute("""
        SELECT prompt_hash, min(prompt_text) AS prompt_text FROM staging.stg_interactions
        WHERE trim(coalesce(prompt_text, '')) <> '' GROUP BY 1 ORDER BY 1""").fetch_arrow_table()
    hashes = prompts["prompt_hash"].to_pylist()
    if hashes:
        signatures, sets = hasher.sketch(prompts["prompt_text"].to_pylist(), workers=SKETCH_THREADS)
        components = cluster(hashes, signatures, hasher, sets)
        del signatures, sets
    else:
        components = {}
    con.register("prompt_components", pa.table({"prompt_hash": pa.array(list(components), pa.string()),
                                                "component": pa.array(list(components.values()), pa.string())}))
    try:
        with writing(con, "dedup.clusters"), transaction(con):
            con.execute("""
                CREATE OR REPLACE TABLE dedup.clusters AS
                WITH members AS (
                    SELECT s.request_id, s.event_date, s.ts,
                           coalesce('prompt:' || p.component, 'request:' || s.request_id) AS component
                    FROM staging.stg_interactions s LEFT JOIN prompt_components p USING (prompt_hash)
                )
                SELECT request_id, event_date,
                       first(request_id ORDER BY ts, request_id) OVER (PARTITION BY component) AS cluster_id
                FROM members
                ORDER BY event_date, request_id""")
    finally:
        con.unregister("prompt_components")
    interactions, clusters, multi = con.execute("""
        SELECT sum(n), count(*), count(*) FILTER (WHERE n > 1)
        FROM (SELECT cluster_id, count(*) AS n FROM dedup.clusters GROUP BY 1)""").fetchall()[0]
    return ClusterResult(int(interactions or 0), len(hashes), clusters, multi)
