"""Dead letters, as data: how a parked message is written, and how it is read back.

Pure functions, shared by the runtime (which parks and redelivers), the deadletters service
(which keeps letters) and the tests (which read them). A letter is an AS2 ``Flag`` whose
``object`` carries the original topic, the payload (text, or base64 when it is not UTF-8),
its size and the attempts made; ``summary`` is the reason; ``signature`` is the parking
service's proof that it parked this letter as it is (``dovecote.redelivery``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from dovecote import activity as act
from dovecote.errors import InvalidLetter

TEXT = "application/activity+json"
BINARY = "application/octet-stream;base64"
REASON_LIMIT = 4000
# The service that keeps every letter; it alone parks garbage on the broadcast presence
# query, which every worker of every service receives (worker.py: _answer_state_query).
KEEPER = "deadletters"

Sign = Callable[[str, str, bytes], str]  # (letter id, topic, payload) -> signature


def letter(
    actor: act.Actor | Mapping[str, Any],
    topic: str,
    payload: bytes,
    reason: str,
    attempts: int,
    limit: int,
    sign: Sign | None = None,
) -> dict[str, Any]:
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
    letter_id = act.new_id()
    signature = sign(letter_id, topic, payload) if sign else None
    head = (actor, letter_id, signature, topic, payload, reason, attempts)
    envelope = len(act.encode(_flag(*head, 0, text)))
    keep = limit
    while True:
        flag = _flag(*head, keep, text)
        size = len(act.encode(flag))
        if size <= limit or keep == 0:
            return flag
        # The envelope's bytes are fixed; the content's bytes per payload byte are not.
        shrunk = (limit - envelope) * keep // max(size - envelope, 1) - 16
        keep = max(0, min(keep - 1, shrunk))


def _flag(
    actor: act.Actor | Mapping[str, Any],
    letter_id: str,
    signature: str | None,
    topic: str,
    payload: bytes,
    reason: str,
    attempts: int,
    keep: int,
    text: bool,
) -> dict[str, Any]:
    kept = payload[:keep]
    if text:  # a cut may split a character: its bytes go, the rest is still a prefix
        content, media = kept.decode("utf-8", "ignore"), TEXT
    else:
        content, media = base64.b64encode(kept).decode(), BINARY
    parked = {
        "type": "Object",
        "name": topic,
        "mediaType": media,
        "content": content,
        "size": len(payload),
        "attempts": attempts,
    }
    flag = act.new("Flag", actor, parked, summary=reason[:REASON_LIMIT], signature=signature)
    flag["id"] = letter_id
    return flag


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
