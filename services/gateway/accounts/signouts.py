"""Sign-ins that end take their sockets with them, on every gateway.

A request is refused the moment its sign-in is gone from the accounts store (``signins.py``,
``people.by_token``). An open websocket was judged once, when it opened, so it must be
closed as well:

- at once on this gateway worker (``Hub.close_ended``, close code 4401);
- on every other worker and machine through the bus (``commands/gateway/disconnect``,
  ``topics.py``), each closing its own sockets of that person;
- and, in case that message never comes (the bus was away, the sign-in simply expired),
  every ``SIGNIN_SWEEP`` seconds each worker asks the store which of its sockets' sign-ins
  still live, and closes the rest.
"""

from __future__ import annotations

import asyncio
import logging

from dovecote import activity as act
from dovecote.errors import BusError, StoreUnavailable
from services.gateway.accounts.credentials import Person
from services.gateway.context import Context
from services.gateway.topics import SIGNINS_ENDED, EndedSignIns, SignInsEnded

log = logging.getLogger("dovecote.gateway.signouts")
SWEEP_EVERY = 60.0  # seconds (SIGNIN_SWEEP)
BATCH = 100  # credentials in one bus message (the payload's bound)


def ended(ctx: Context, who: Person, credentials: list[str]) -> None:
    """These sign-ins of ``who`` ended (already gone from the store): close their sockets
    here and tell the other gateways to close theirs."""
    if not credentials:
        return
    ctx.hub.close_ended(set(credentials), who.id)
    actor = ctx.directory.actor(who)
    for at in range(0, len(credentials), BATCH):
        activity = SignInsEnded(
            **act.envelope(),
            type="Delete",
            actor=actor,
            object=EndedSignIns(
                type="Collection", attributedTo=actor, items=credentials[at : at + BATCH]
            ),
        )
        try:
            ctx.publish(SIGNINS_ENDED, activity)
        except BusError as exc:  # the sweep closes the other gateways' sockets later
            log.warning("could not tell the other gateways that %s signed out: %s", who.id, exc)


def sweep(ctx: Context) -> int:
    """Close this worker's sockets whose sign-ins are gone; drop expired rows. How many."""
    people = ctx.people
    held = ctx.hub.credentials()
    sessions = {c.removeprefix("session:") for c in held if c.startswith("session:")}
    tokens = {c.removeprefix("token:") for c in held if c.startswith("token:")}
    live = {f"session:{h}" for h in people.signins.live(sessions)}
    live |= {f"token:{t}" for t in people.live_tokens(tokens)}
    people.signins.purge()
    people.guesses.purge()
    return ctx.hub.close_ended(held - live)


async def sweep_forever(ctx: Context, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            closed = sweep(ctx)
        except StoreUnavailable as exc:  # the database is away: the next sweep tries again
            log.warning("the sign-in sweep waits for the accounts store: %s", exc)
            continue
        except Exception:  # a store that is away for a moment: the next sweep tries again
            log.exception("the sign-in sweep failed")
            continue
        if closed:
            log.info("closed %d socket(s) whose sign-in ended", closed)
