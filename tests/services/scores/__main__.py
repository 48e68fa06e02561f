from dovecote import run
from tests.services.scores.service import Scores

run(Scores)
