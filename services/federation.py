"""The federation's manifest: every service, and every contract module, named once.

The tools load it by the name pyproject.toml gives (``[tool.dovecote] federation``, or
``DOVECOTE_FEDERATION``): ``dovecote run`` starts these services, ``make docs`` documents
these topics and writes the broker's grants from these services' handlers. ``dovecote
new-service`` adds a line here and in ``contracts.py``. Services themselves never import this
module (a service imports its own contract and those of the services it reads). A service in
another language is a ``Participant``: its contract is Python like everyone's, its code is
not (docs/adding-a-service.md, "In another language").
"""

from __future__ import annotations

from dovecote.federation import Federation, Participant
from services.builder.service import Builder
from services.contracts import CONTRACTS
from services.deadletters.service import DeadLetters
from services.gateway.service import Gateway
from services.gateway.topics import IMAGE_CREATED
from services.notifier.service import Notifier
from services.notifier.topics import NOTIFICATION
from services.points.service import Points
from services.resizer.service import Resizer
from services.tweeter.service import Tweeter

# Services in other languages: no class to read their subscriptions from, so named here with
# what they read (their topics are in their contract, like everyone's) and how one starts.
PARTICIPANTS = (
    Participant(
        "captioner",
        reads=(IMAGE_CREATED,),
        source="examples/node-captioner",
        command=("node", "captioner.mjs"),
    ),
)

FEDERATION = Federation(
    services=(
        Builder,
        DeadLetters,
        Gateway,
        Notifier,
        Points,
        Resizer,
        Tweeter,
    ),
    contracts=CONTRACTS,
    # A person's own device login reads their notifications, and nothing else.
    person_reads=(NOTIFICATION,),
    participants=PARTICIPANTS,
)
