from services.resizer.service import Resizer
from shared.service import run

run(Resizer)
