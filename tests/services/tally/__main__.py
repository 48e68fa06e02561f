from shared.service import run
from tests.services.tally.service import Tally

run(Tally)
