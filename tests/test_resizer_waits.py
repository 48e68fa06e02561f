"""The resizer and a gateway that asks it to come back (503 with Retry-After: the gateway's
database is down, say): the message waits, unacknowledged, and is resized once the gateway
serves again; it is not dead-lettered. A real Worker on the in-memory bus, a real HTTP
server as the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from dovecote import activity as act
from dovecote import resources
from dovecote.tools.broker import free_port
from dovecote_testing.plugin import MemoryBus
from services.resizer.service import Resizer
from tests import imagefiles

ADA = {"type": "Person", "id": "http://gw/users/ada", "name": "Ada"}
PHOTO = imagefiles.photo(320, 240)


class Gateway:
    """Answers 503 + Retry-After to the first ``refusals`` requests, then serves the photo
    and takes its thumbnails."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.thumbnails: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        if self.refusals > 0:
            self.refusals -= 1
            raise web.HTTPServiceUnavailable(text="store down", headers={"Retry-After": "1"})
        if request.method == "PUT":
            self.thumbnails.append(request.path)
            return web.Response(status=201)
        return web.Response(body=PHOTO, content_type="image/jpeg")


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[Gateway, str]]:
    fake = Gateway(refusals=6)
    app = web.Application()
    app.router.add_route("*", "/images/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_gateway_that_asks_to_come_back_is_waited_for_not_dead_lettered(
    memory_bus: MemoryBus, gateway: tuple[Gateway, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = gateway
    monkeypatch.setattr(resources, "BACKOFF", (0.01,))  # two tries a handler run, not 16 s
    # Two runs of the handler would park a message that failed otherwise; six refusals take
    # three runs.
    await memory_bus.start(
        Resizer,
        PUBLIC_URL=url,
        DOVECOTE_SERVICE_TOKEN="t",
        THUMBNAIL_SIZES="64",
        DOVECOTE_HANDLER_ATTEMPTS="2",
    )
    image_url = f"{url}/images/abc"
    image = {
        "type": "Image",
        "id": image_url,
        "url": image_url,
        "mediaType": "image/jpeg",
        "name": "cat",
        "width": 320,
        "height": 240,
        "size": len(PHOTO),
    }
    memory_bus.probe.publish("events/image/created", act.new("Create", ADA, image))
    [resized] = await memory_bus.probe.wait_for("events/image/resized", timeout=10)
    assert resized["object"]["id"] == image_url and fake.refusals == 0
    assert fake.thumbnails == ["/images/abc/thumbnails/64"]
    assert memory_bus.probe.on("deadletter/resizer") == []
