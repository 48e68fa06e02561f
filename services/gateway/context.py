"""What every gateway request handler shares: the app's context, one object per process."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from dovecote.link import Link
from dovecote.service import Publish
from dovecote.topics import P, Topic
from services.gateway.accounts.invites import Signup
from services.gateway.operations.toolkit import Operations

if TYPE_CHECKING:  # the features import CTX from here; this module imports none of them
    from services.gateway.accounts.guesses import DeviceCookies
    from services.gateway.accounts.people import People
    from services.gateway.bus.hub import Hub
    from services.gateway.images.budget import MemoryBudget
    from services.gateway.images.store import ImageStore
    from services.gateway.social.inbox_client import InboxClient
    from services.gateway.social.person_as2 import Directory
    from services.gateway.web.limits import Limits

FEED_SIZE = 40  # events a page's "On the bus" shows


@dataclass(frozen=True)
class Images:
    """The image resources: where they are stored, what is accepted, who may add thumbnails."""

    store: ImageStore
    public_url: str
    max_bytes: int
    max_pixels: int
    max_decoded: int  # bytes an image may decode to (IMAGE_MAX_DECODED_BYTES)
    service_token: str | None  # None: thumbnail uploads are refused (503)
    pool: Executor  # Pillow and file I/O run here, off the event loop
    budget: MemoryBudget  # what decoding in ``pool`` may hold at once (IMAGE_DECODE_BUDGET_BYTES)
    # RATE_UPLOADS_PERSON when it is kept in the shared store (DATABASE_URL), not in memory:
    # (person) -> 0, or the seconds to wait. Blocks: call it in ``pool``.
    allowance: Callable[[str], float] | None = None


class Promise(Protocol):
    """Publish through the outbox, and wait (a moment, while the bus is reachable) for the
    broker to acknowledge it: True once it did, False if it is still only in the outbox."""

    async def __call__(self, entry: Topic[P], activity: P, /) -> bool: ...


@dataclass
class Context:
    hub: Hub
    people: People
    directory: Directory
    publish: Publish  # durable: what a 201/202 promised survives a crash (the outbox)
    root: str
    public_url: str
    session_key: str  # a Fernet key (DOVECOTE_SESSION_KEY)
    session_max_age: int  # seconds
    inbox: InboxClient
    limits: Limits
    hashing: Executor  # password hashing (~0.1 s of CPU each) runs here
    devices: DeviceCookies  # browsers their owners signed in with before (accounts/guesses.py)
    signup: Signup = "open"  # who may make an account at /signup (SIGNUP, accounts/invites.py)
    images: Images | None = None
    # The last public events as frames, newest last: the feed a page is drawn with.
    feed: deque[bytes] = field(default_factory=lambda: deque(maxlen=FEED_SIZE))
    operations: Operations = field(default_factory=Operations)  # metrics, traces, operators
    link: Link = field(default_factory=Link)  # can this worker reach the bus (bus/reachability.py)
    instance: str = "1"  # this gateway worker's (DOVECOTE_INSTANCE), for its own metrics
    # For an upload's 201: once acknowledged, the upload is the broker's, whatever becomes
    # of this machine (its outbox is a file of its own). None: ``publish``, no wait.
    promise: Promise | None = None


CTX = web.AppKey("ctx", Context)
