"""Asking the notifier for a person's inbox: a ``View`` on ``commands/notifier/inbox``, the
answer on ``replies/notifier/<request>`` taken by the worker that asked, or nothing after
``INBOX_TIMEOUT`` seconds (``inbox_view.py`` says what the page then shows)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dovecote import activity as act
from dovecote.errors import BusError
from dovecote.service import Publish
from services.gateway import topics as gateway_topics

log = logging.getLogger("dovecote.gateway.inbox")
SHOWN = 30  # notifications a page shows


class InboxClient:
    """Asks the notifier for inboxes; one per gateway worker."""

    def __init__(self, ask: Publish, timeout: float) -> None:
        self.ask = ask
        self.timeout = timeout
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def fetch(self, actor: act.Actor, limit: int = SHOWN) -> dict[str, Any] | None:
        """The person's inbox (an AS2 OrderedCollection with ``unread``), or None when the
        notifier did not answer in time."""
        command = gateway_topics.ViewInbox(
            **act.envelope(),
            type="View",
            actor=actor,
            object=gateway_topics.InboxRequest(type="OrderedCollection", limit=limit),
        )
        answer = asyncio.get_running_loop().create_future()
        self.pending[command.id] = answer
        try:
            self.ask(gateway_topics.INBOX_VIEW, command)
            return await asyncio.wait_for(answer, self.timeout)
        except (TimeoutError, BusError) as exc:
            log.warning("no inbox for %s: %r", actor.preferredUsername, exc)
            return None
        finally:
            self.pending.pop(command.id, None)

    def answered(self, in_reply_to: str, inbox: dict[str, Any]) -> None:
        """A reply from the bus: another worker's question is not ours, and is ignored."""
        answer = self.pending.get(in_reply_to)
        if answer is not None and not answer.done():
            answer.set_result(inbox)
