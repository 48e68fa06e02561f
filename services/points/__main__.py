from dovecote import run
from services.points.service import Points

run(Points)
