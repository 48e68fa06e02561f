from services.gateway.service import Gateway
from shared.service import run

run(Gateway)
