"""Staying connected: forever, over a cluster's nodes, backed off where it must be.

One task does it for the life of a connection (``Reconnecting.run``): connect, wait for the
loss, connect again. Over the nodes ``MQTT_URL`` names in turn: a lost or refusing node is
left for the next at once; a whole round that fails waits a capped exponential backoff with
jitter; a broker that keeps cutting connections it accepted is backed off from
(``dovecote.backoff``). The blocking connect (``dial``) runs in a thread, so that a slow or
absent broker never stalls the loop. Should that task ever die (a bug), ``broken`` says so
rather than leave the connection sitting there disconnected: a worker exits on it.

This module knows nothing of paho: the connection (``dovecote.mqtt.connection``) tells it
how each attempt was answered (``answered``) and when its socket closed (``closed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

from dovecote.backoff import AfterLoss, Backoff
from dovecote.config import BrokerAddress
from dovecote.errors import BusError

log = logging.getLogger("dovecote.mqtt")

Node = tuple[str, int]


class Reconnecting:
    """The connecting of one connection; ``dial(node)`` connects to a node (blocking, in a
    thread); ``attempt(begun)`` is told when an attempt begins (True) and fails (False)."""

    def __init__(
        self,
        broker: BrokerAddress,
        client_id: str,
        *,
        dial: Callable[[Node], object],
        attempt: Callable[[bool], None],
        stopping: Callable[[], bool],
        keepalive: int,
        backoff: Backoff,
        after_loss: AfterLoss,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.node = broker.nodes[0]  # (host, port) of the node connected to, or tried last
        self._tried = 0  # connection attempts, over the nodes in turn
        self._dial = dial
        self._attempt = attempt
        self._stopping = stopping
        self._keepalive = keepalive
        self._backoff = backoff
        self._after_loss = after_loss
        self.task: asyncio.Task[None] | None = None
        # The current attempt's outcome, made before it starts: nothing can happen unseen.
        self._answer: asyncio.Future[None] | None = None  # accepted (or dropped unanswered)
        self._ended: asyncio.Future[None] | None = None  # its socket closed
        self._answered = False  # a CONNACK came, accepting or refusing
        self.broken = asyncio.Event()
        self.broken_by: BaseException | None = None  # why reconnecting stopped for good
        self.cut_short = 0  # accepted connections lost before they held (``AfterLoss``)

    def start(self, on_broken: Callable[[], None]) -> None:
        """The one task, from now; ``on_broken`` if it ever dies of an error."""
        self.task = asyncio.get_running_loop().create_task(self.run())
        self.task.add_done_callback(lambda task: self._ended_task(task, on_broken))

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def until(self, event: asyncio.Event, timeout: float | None) -> None:
        """Until ``event`` (TimeoutError after ``timeout``); BusError if reconnecting has
        stopped for good (``broken``): waiting on would be waiting for ever."""
        if not self.broken.is_set():
            waiting = asyncio.ensure_future(event.wait())
            broken = asyncio.ensure_future(self.broken.wait())
            try:
                done, _ = await asyncio.wait(
                    {waiting, broken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiting.cancel()
                broken.cancel()
            if waiting in done:
                return
            if not done:
                raise TimeoutError(f"{self.client_id}: not connected within {timeout} s")
        raise BusError(
            f"{self.client_id}: stopped reconnecting to the broker: {self.broken_by!r}"
        ) from self.broken_by

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    # --- what the connection reports ---------------------------------------------------

    def answered(self, accepted: bool) -> None:
        """A CONNACK came for the current attempt."""
        self._answered = True
        if accepted and self._answer is not None and not self._answer.done():
            self._answer.set_result(None)

    def closed(self) -> None:
        """The current attempt's socket closed: unanswered, the attempt failed; accepted,
        the connection is lost (``run`` connects again)."""
        answer, ended = self._answer, self._ended
        if answer is not None and not answer.done() and not self._answered:
            answer.set_exception(
                ConnectionResetError("the broker closed the connection before answering it")
            )
            answer.exception()  # retrieved: an attempt given up on has no one awaiting it
        if ended is not None and not ended.done():
            ended.set_result(None)

    # --- the task --------------------------------------------------------------------

    async def run(self) -> None:
        """Connect; wait until the connection is lost; connect again: until stopped.

        The one task that ever connects, for the life of the connection. A task per loss
        missed losses (issue 11): a CONNACK and, at once, a session takeover's hang-up, both
        before the connecting task had looked, set and cleared ``connected`` unseen; the loss
        found that task still running and started none, and the task then waited the
        keepalive (30 s, ``MQTT_KEEPALIVE`` up to an hour) for an answer come and gone.
        Here each attempt's answer and end are futures made before it starts.
        """
        loop = asyncio.get_running_loop()
        while not self._stopping():
            ended = await self._connect()
            accepted = loop.time()
            await ended  # a loss is seen even if it came before this line
            lived = loop.time() - accepted
            # From the next node (``_tried``): a lost node is left for the next. At once
            # after a connection that held; backed off while they are cut short in a row.
            delay = self._after_loss.lost(lived)
            if lived < self._after_loss.held_after:
                self.cut_short += 1
            if delay and not self._stopping():
                log.warning(
                    "%s: the broker cut the connection %.2f s after accepting it (%d in a "
                    "row); connecting again in %.1f s",
                    self.client_id,
                    lived,
                    self._after_loss.cuts,
                    delay,
                )
                await asyncio.sleep(delay)

    def _ended_task(self, task: asyncio.Task[None], on_broken: Callable[[], None]) -> None:
        if task.cancelled() or task.exception() is None:
            return  # stopped, as asked
        self.broken_by = task.exception()
        log.critical(
            "%s: stopped reconnecting to the broker on an unexpected error",
            self.client_id,
            exc_info=self.broken_by,
        )
        on_broken()
        self.broken.set()

    async def _connect(self) -> asyncio.Future[None]:
        """Until a connection is accepted: its ``ended``, done when its socket closes."""
        loop = asyncio.get_running_loop()
        failures = 0
        nodes = self.broker.nodes
        delays = self._backoff.delays()  # one delay after each round of the nodes
        while True:
            # A cluster's nodes (MQTT_URL=mqtt://a:1883,b:1884,...) in turn, from the one after
            # the last tried: a node that is lost or refuses is left for the next at once.
            self.node = node = nodes[self._tried % len(nodes)]
            self._tried += 1
            answer = self._answer = loop.create_future()
            ended = self._ended = loop.create_future()
            self._answered = False
            self._attempt(True)
            try:
                await loop.run_in_executor(None, self._dial, node)
                await self._connack(answer)
                return ended
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.warning(
                        "%s: cannot reach broker %s (%s); retrying (attempt %d)",
                        self.client_id,
                        self.broker.node_url(*node),
                        exc or type(exc).__name__,
                        failures,
                    )
                self._attempt(False)
                if self._tried % len(nodes):
                    continue  # the next node at once; the backoff delay after a whole round
            await asyncio.sleep(next(delays))

    async def _connack(self, answer: asyncio.Future[None]) -> None:
        """Until this attempt is accepted. It is over if the socket drops first (a broker
        dying as it accepted us): no CONNACK can come on it, so no waiting the keepalive."""
        # asyncio.wait, not wait_for: on 3.11 a cancellation (stop) that comes with the
        # answer is swallowed by wait_for, and this task would outlive the stop.
        await asyncio.wait({answer}, timeout=self._keepalive)
        if not answer.done():
            # Refused (bad credentials, ...): the broker closed the socket; we retry slowly.
            raise TimeoutError(f"no CONNACK accepting the connection within {self._keepalive} s")
        answer.result()  # dropped before answering: ConnectionResetError
