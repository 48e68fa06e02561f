from dovecote import run
from services.tweeter.service import Tweeter

run(Tweeter)
