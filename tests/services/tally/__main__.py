from dovecote import run
from tests.services.tally.service import Tally

run(Tally)
