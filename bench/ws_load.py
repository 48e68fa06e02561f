"""A websocket load process: N clients that time every bench frame they receive.

``python -m bench.ws_load WS_URL N``: prints ``ready`` once all N are connected, then, when
its stdin closes, one JSON line of latencies in milliseconds (receive time minus the
publisher's send time carried in ``summary``; same machine, same clock).
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
import websockets

MARK = b"/events/bench/ping"


async def client(
    url: str, latencies: list[float], ready: asyncio.Event, connected: list[int], n: int
) -> None:
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        connected.append(1)
        if len(connected) == n:
            ready.set()
        async for frame in ws:
            now = time.time_ns()
            data = frame.encode() if isinstance(frame, str) else frame
            if MARK in data:
                sent = int(orjson.loads(data)["activity"]["summary"])
                latencies.append((now - sent) / 1e6)


async def main(url: str, n: int) -> None:
    latencies: list[float] = []
    ready = asyncio.Event()
    connected: list[int] = []
    tasks = [asyncio.create_task(client(url, latencies, ready, connected, n)) for _ in range(n)]
    await asyncio.wait_for(ready.wait(), 60)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for t in tasks:
        t.cancel()
    print(orjson.dumps(latencies).decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
