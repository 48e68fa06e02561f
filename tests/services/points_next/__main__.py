"""Run as ``python -m tests.services.points_next``: the points service's name, pool and
ledger, with the next version's contract."""

import sys

from tests.services.points_next import topics

# The next release's source tree has its new topics.py where the old one was: so does this
# process, before services/points/service.py imports it (and the old one never registers).
sys.modules["services.points.topics"] = topics

from dovecote import run  # noqa: E402
from tests.services.points_next.service import PointsNext  # noqa: E402

run(PointsNext)
