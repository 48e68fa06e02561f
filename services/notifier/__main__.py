from services.notifier.service import Notifier
from shared.service import run

run(Notifier)
