"""Dead letters, as data: how a parked message is written, and how it is read back.

Pure functions, shared by the runtime (which parks and redelivers), the deadletters service
(which keeps letters) and the tests (which read them). A letter is an AS2 ``Flag`` whose
``object`` carries the original topic, the payload (text, or base64 when it is not UTF-8),
its size and the attempts made; ``summary`` is the reason; ``signature`` is the parking
service's proof that it parked this letter as it is (``dovecote.redelivery``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Final

from dovecote import activity as act
from dovecote.errors import InvalidLetter

TEXT: Final = "application/activity+json"
BINARY: Final = "application/octet-stream;base64"
REASON_LIMIT = 4000
# The service that keeps every letter; it alone parks garbage on the broadcast presence
# query, which every worker of every service receives (statequery.py: StateQuery.answer).
KEEPER = "deadletters"

Sign = Callable[[str, str, bytes], str]  # (letter id, topic, payload) -> signature


def letter(
    actor: act.Actor,
    topic: str,
    payload: bytes,
    reason: str,
    attempts: int,
    limit: int,
    sign: Sign | None = None,
) -> act.DeadLetter:
    """The ``Flag`` that parks ``payload`` (as it arrived on ``topic``), at most ``limit``
    bytes once encoded, signed with ``sign`` over the whole payload (a letter cut short
    cannot be redelivered anyway).

    The letter must fit the payload limit, or the deadletters service would refuse it in
    turn: the original is cut until it does. Cutting at the limit is not enough (the fuzz run
    found it): JSON escapes a control character in 6 bytes and base64 takes 4 for 3, so a
    letter can be several times its payload.
    """
    try:
        payload.decode("utf-8")
        text = True
    except UnicodeDecodeError:
        text = False
    envelope = act.envelope()
    signature = sign(envelope["id"], topic, payload) if sign else None
    head = (actor, envelope, signature, topic, payload, reason, attempts)
    fixed = len(act.encode(_flag(*head, 0, text)))
    keep = limit
    while True:
        flag = _flag(*head, keep, text)
        size = len(act.encode(flag))
        if size <= limit or keep == 0:
            return flag
        # The envelope's bytes are fixed; the content's bytes per payload byte are not.
        shrunk = (limit - fixed) * keep // max(size - fixed, 1) - 16
        keep = max(0, min(keep - 1, shrunk))


def _flag(
    actor: act.Actor,
    envelope: act.Envelope,
    signature: str | None,
    topic: str,
    payload: bytes,
    reason: str,
    attempts: int,
    keep: int,
    text: bool,
) -> act.DeadLetter:
    kept = payload[:keep]
    parked = act.ParkedMessage(
        type="Object",
        name=topic,
        # a cut may split a character: its bytes go, the rest is still a prefix
        mediaType=TEXT if text else BINARY,
        content=kept.decode("utf-8", "ignore") if text else base64.b64encode(kept).decode(),
        size=len(payload),
        attempts=attempts,
    )
    return act.DeadLetter(
        **envelope,
        type="Flag",
        actor=actor,
        object=parked,
        summary=reason[:REASON_LIMIT],
        signature=signature,
    )


def kept(parked: act.ParkedMessage) -> bytes:
    """The payload bytes a letter holds: the whole original, or a prefix of it when the
    letter was cut to fit. ``InvalidLetter`` when its base64 is damaged."""
    if parked.mediaType == BINARY:
        try:
            return base64.b64decode(parked.content, validate=True)
        except ValueError:
            raise InvalidLetter("the dead letter's base64 content is damaged") from None
    return parked.content.encode()


def original(parked: act.ParkedMessage) -> bytes:
    """The payload a letter parked, byte for byte; ``InvalidLetter`` when it cannot be had
    (damaged base64, or a letter cut short to fit the limit)."""
    payload = kept(parked)
    if len(payload) != parked.size:
        raise InvalidLetter(f"cannot redeliver a letter cut short ({parked.size} bytes)")
    return payload
