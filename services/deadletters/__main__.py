"""The deadletters service: keeps every dead letter; lists and replays them for operators."""

from dovecote import run
from services.deadletters.service import DeadLetters

run(DeadLetters)
