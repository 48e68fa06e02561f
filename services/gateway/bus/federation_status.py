"""What the gateway knows of the federation right now, from the retained frames it holds:
which services are online, and the current build. Pages draw their controls from it (an
unavailable one says why), and commands that cannot work are refused with the same reason
instead of being published for nobody.

Presence is the services' retained Join, and their Last Will's Leave (``services/+/+``). A
service the gateway has not heard of is *unknown*, not offline: right after the gateway
starts, presence is still arriving, and a command then is accepted (the builder refuses a
Start that waited too long itself, ``BUILD_COMMAND_MAX_AGE``).

What pages get of a worker's presence is ``shown``: its service, instance and status. The
process id and host name in the Join stay on the bus, for operators (``dovecote tail``).
"""

from __future__ import annotations

from typing import Any

import orjson

from dovecote import activity as act
from services.gateway.bus.hub import Hub


def shown(presence: act.Presence) -> bytes:
    """A worker's presence as pages get it (websocket frames, ``/api/state``): Join or
    Leave, and the worker's service, instance and status; nothing on where it runs."""
    worker = presence.object
    return orjson.dumps(
        {
            "type": presence.type,
            "object": {"name": worker.name, "instance": worker.instance, "status": worker.status},
        }
    )


def _activity(frame: bytes) -> dict[str, Any]:
    found: dict[str, Any] = orjson.loads(frame)["activity"]
    return found


def online(hub: Hub, root: str, service: str) -> bool | None:
    """True: a worker of ``service`` is online; False: every worker heard of is offline;
    None: none heard of yet."""
    prefix = f"{root}/services/{service}/"
    seen = [_activity(f)["object"] for t, f in list(hub.retained.items()) if t.startswith(prefix)]
    if not seen:
        return None
    return any(worker.get("status") == "online" for worker in seen)


def current_build(hub: Hub, root: str) -> dict[str, Any] | None:
    """The current (or last) build, as the builder's retained ``state/build`` has it."""
    frame = hub.retained.get(f"{root}/state/build")
    if frame is None:
        return None
    build: dict[str, Any] = _activity(frame)["object"]
    return build


def offline_reason(service: str) -> str:
    return f"{service} is offline"


def why_not_start(hub: Hub, root: str) -> str | None:
    """Why Start cannot work now, or None."""
    if online(hub, root, "builder") is False:
        return offline_reason("builder")
    build = current_build(hub, root)
    if build is not None and build.get("state") == "running":
        return f"{build.get('name', 'a build')} is running"
    return None


def why_not_stop(hub: Hub, root: str, wanted: str | None = None) -> str | None:
    """Why Stop (of ``wanted``, or of whatever runs) cannot work now, or None."""
    build = current_build(hub, root)
    if build is None or build.get("state") != "running":
        return "no build is running"
    if wanted is not None and wanted != build.get("id"):
        return f"{wanted} is not the running build ({build.get('name')} is)"
    if online(hub, root, "builder") is False:
        return offline_reason("builder")
    return None
