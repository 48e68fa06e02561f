"""The deadletters service: keeps every dead letter; lists and replays them for operators."""

from services.deadletters.service import DeadLetters
from shared.service import run

run(DeadLetters)
