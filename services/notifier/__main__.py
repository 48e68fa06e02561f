from dovecote import run
from services.notifier.service import Notifier

run(Notifier)
