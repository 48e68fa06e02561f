from dovecote import run
from services.resizer.service import Resizer

run(Resizer)
