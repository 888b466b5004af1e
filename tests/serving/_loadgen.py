"""A small open-loop HTTP load generator (aiohttp): requests start on a fixed schedule whether or not
earlier ones finished, as independent clients do, so an overloaded server cannot slow the offered
load down (a closed loop would, and would hide the overload). Used by test_overload.py and
benchmarks of docs/reliability.md; runs in its own process so it does not share the server's GIL."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field

import aiohttp


@dataclass
class LoadResult:
    offered_rps: float
    seconds: float
    sent: int = 0
    status: dict[str, int] = field(default_factory=dict)   # "200", "503", "error:<type>"
    latencies_ok: list[float] = field(default_factory=list)
    latencies_rejected: list[float] = field(default_factory=list)
    retry_after: set[str] = field(default_factory=set)

    @property
    def ok(self) -> int:
        return self.status.get("200", 0)

    def p(self, q: float, values: list[float] | None = None) -> float:
        values = sorted(self.latencies_ok if values is None else values)
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _headers(header_length: int | None) -> dict[str, str]:
    headers = {"content-type": "application/octet-stream" if header_length else "application/json"}
    if header_length:
        headers["inference-header-content-length"] = str(header_length)
    return headers


async def closed_loop(url: str, body: bytes, concurrency: int, seconds: float,
                      header_length: int | None = None) -> float:
    """Throughput (requests/s answered 200) with `concurrency` clients sending back to back."""
    done = 0
    stop = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def client() -> None:
            nonlocal done
            while time.monotonic() < stop:
                async with session.post(url, data=body, headers=_headers(header_length)) as r:
                    await r.read()
                    done += r.status == 200
        start = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return done / (time.monotonic() - start)


async def open_loop(url: str, body: bytes, rps: float, seconds: float, header_length: int | None = None,
                    timeout: float = 30.0) -> LoadResult:
    result = LoadResult(rps, seconds)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async def one() -> None:
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=_headers(header_length)) as r:
                    await r.read()
                    key = str(r.status)
                    if "Retry-After" in r.headers:
                        result.retry_after.add(r.headers["Retry-After"])
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
                key = f"error:{type(err).__name__}"
            elapsed = time.perf_counter() - start
            result.status[key] = result.status.get(key, 0) + 1
            (result.latencies_ok if key == "200" else result.latencies_rejected).append(elapsed)

        tasks = []
        start = time.monotonic()
        interval = 1.0 / rps
        while (now := time.monotonic()) < start + seconds:
            due = int((now - start) / interval) + 1 - result.sent   # catch up if the loop fell behind
            for _ in range(max(due, 0)):
                tasks.append(asyncio.create_task(one()))
                result.sent += 1
            await asyncio.sleep(interval if interval > 0.001 else 0.001)
        await asyncio.gather(*tasks)
    return result


def main() -> None:
    """python -m tests.serving._loadgen closed|open URL BODY_FILE CONCURRENCY|RPS SECONDS [HEADER_LENGTH]
    -> one JSON line on stdout (HEADER_LENGTH: the body is a v2 binary-extension request)."""
    mode, url, body_file, level, seconds = sys.argv[1:6]
    header_length = int(sys.argv[6]) if len(sys.argv) > 6 else None
    body = open(body_file, "rb").read()
    if mode == "closed":
        rps = asyncio.run(closed_loop(url, body, int(level), float(seconds), header_length))
        print(json.dumps({"rps": rps}))
        return
    result = asyncio.run(open_loop(url, body, float(level), float(seconds), header_length))
    out = asdict(result)
    out["retry_after"] = sorted(result.retry_after)
    out["p50_ok"], out["p99_ok"], out["p99_rejected"] = result.p(0.5), result.p(0.99), result.p(0.99, result.latencies_rejected)
    del out["latencies_ok"], out["latencies_rejected"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
