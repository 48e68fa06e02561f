"""Every service's contract module: the topics each publishes, and their payloads.

Importing this registers the federation's whole topic registry. The federation's manifest
(``services/federation.py``) names it, and the gateway reads it: it draws a card for any
service's retained state, from the topic's display hint. ``dovecote new-service`` adds a
line here.
"""

from __future__ import annotations

from services.builder import topics as builder
from services.captioner import topics as captioner
from services.gateway import topics as gateway
from services.notifier import topics as notifier
from services.points import topics as points
from services.resizer import topics as resizer
from services.tweeter import topics as tweeter

CONTRACTS = (
    builder,
    captioner,
    gateway,
    notifier,
    points,
    resizer,
    tweeter,
)
