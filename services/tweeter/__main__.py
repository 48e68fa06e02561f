from services.tweeter.service import Tweeter
from shared.service import run

run(Tweeter)
