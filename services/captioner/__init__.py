"""The captioner: a service in Node.js (``examples/node-captioner``), no Python here.

Only its contract is Python (``topics.py``), like every service's: the registry, the docs,
the schemas it validates with and the broker's grants all come from it. The manifest names
it as a ``Participant`` (``services/federation.py``), with what it reads.
"""
