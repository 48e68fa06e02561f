from services.points.service import Points
from shared.service import run

run(Points)
