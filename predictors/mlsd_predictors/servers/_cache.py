"""The prediction cache (`spec.cache`): answers per input row, kept in the predictor process.

A row's key is a digest of the model's identity (name, version, precision) and the row's canonical
form: for every input in name order, its datatype, its per-row shape and its bytes in C order. Two
requests that carry the same row (however they were encoded: v1 JSON, v2 JSON, binary, gRPC) get the
same key, and a different version can never read an answer cached for another, so a promotion
never serves stale predictions. Hits and misses are counted per row.

Only case studies whose answer depends on the content alone may use it (the API refuses the others;
docs/case-studies/ explains why).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import numpy as np
from cachetools import TTLCache

Results = dict[str, np.ndarray]


class PredictionCache:
    def __init__(self, *, size: int, ttl_seconds: float, identity: str, hits, misses, entries) -> None:
        self._entries: TTLCache[bytes, dict[str, np.ndarray]] = TTLCache(maxsize=size, ttl=ttl_seconds)
        self._identity = identity.encode()
        self._hits, self._misses, self._size = hits, misses, entries

    def keys(self, feeds: dict[str, np.ndarray]) -> list[bytes]:
        names = sorted(feeds)
        rows = len(feeds[names[0]])
        out = []
        for i in range(rows):
            digest = hashlib.blake2b(self._identity, digest_size=20)
            for name in names:
                row = np.ascontiguousarray(feeds[name][i])
                digest.update(f"|{name}|{row.dtype.str}|{row.shape}|".encode())
                digest.update(row.tobytes())
            out.append(digest.digest())
        return out

    async def run(self, feeds: dict[str, np.ndarray], compute: Callable[[dict[str, np.ndarray]], Awaitable[Results]]
                  ) -> Results:
        """The answer for every row: cached rows from the cache, the rest from `compute` (then cached)."""
        keys = self.keys(feeds)
        found = [self._entries.get(k) for k in keys]
        missing = [i for i, hit in enumerate(found) if hit is None]
        self._hits.inc(len(keys) - len(missing))
        if missing:
            self._misses.inc(len(missing))
            computed = await compute({name: array[missing] for name, array in feeds.items()})
            for j, i in enumerate(missing):
                row = {name: np.array(values[j]) for name, values in computed.items()}
                found[i] = row
                self._entries[keys[i]] = row
            if len(missing) == len(keys):
                self._size.set(len(self._entries))
                return computed
        self._size.set(len(self._entries))
        return {name: np.stack([row[name] for row in found]) for name in found[0]}

    def __len__(self) -> int:
        return len(self._entries)
