"""Publish -> websocket latency at light load: 100 sockets, 100 msg/s, side by side.

Each server runs as its own process; the sockets live in two load processes so that the load
generator does not measure itself (docs/performance.md). Each message carries its send time.
"""

from __future__ import annotations

from typing import Any

from bench.common import heading, private_broker
from bench.fleet import Fleet, Publisher
from bench.gateway import Start, Step, dovecote, peer, run_step, with_server
from bench.servers import PeersUnavailable, Server, install_peers

SOCKETS = 100
RATE = 100  # messages per second
SECONDS = 10
LOADERS = 2


async def light_load(server: Server, pub: Publisher) -> Step:
    fleet = await Fleet.open(server.ws_url, SOCKETS, LOADERS, server.engineio)
    try:
        await run_step(server, fleet, pub, SOCKETS, 0, SOCKETS * RATE, 1.0)  # warm-up
        return await run_step(server, fleet, pub, SOCKETS, 1, SOCKETS * RATE, SECONDS)
    finally:
        await fleet.close()


async def measure() -> dict[str, Any]:
    starts: dict[str, Start] = {"Dovecote": dovecote(1)}
    note = ""
    try:
        install_peers()
        starts |= {"socket.io": peer("socketio"), "ws": peer("ws")}
    except PeersUnavailable as exc:
        note = f"PEERS SKIPPED: {exc}"
    results: dict[str, Step] = {}
    with private_broker() as broker:
        for name, start in starts.items():
            results[name] = await with_server(start, broker.url, 1, light_load)
    return {"results": results, "note": note}


def report(r: dict[str, Any]) -> None:
    heading(
        f"Publish -> websocket latency: {SOCKETS} sockets, {RATE} msg/s, {SECONDS} s, "
        f"{LOADERS} load processes"
    )
    if r["note"]:
        print(f"  {r['note']}")
    for name, s in r["results"].items():
        goal = "   (goal p50 <= 5, p99 <= 20)" if name == "Dovecote" else ""
        print(
            f"  {name:10} delivered {s.frames:,} of {s.expected:,}   p50 {s.p50:.1f} ms   "
            f"p99 {s.p99:.1f} ms   CPU {s.us_per_delivery:.1f} us/delivery{goal}"
        )
