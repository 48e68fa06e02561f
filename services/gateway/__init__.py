"""The gateway: the dashboard, websocket push, and the federation's REST resources.

One package per feature, each with its own routes (``add_routes``); none imports another
in a circle (``tests/test_gateway_layout.py``):

- ``service.py``: the bus side (``Gateway``: what it hears, what it forwards) and start-up;
  ``context.py``: what every handler shares; ``topics.py``: what the gateway publishes;
  ``admin.py``: ``dovecote admin gateway``;
- ``web/``: the app assembled (``app.py``), what it opens and closes with it
  (``lifecycle.py``), its edge, sessions and rate limits;
- ``bus/``: the websocket hub, frames, replay and socket, the commands a page may send, what
  the gateway knows of the federation now, whether it reaches the bus, questions it asks;
- ``dashboard/``: the dashboard page and the state cards;
- ``accounts/``: the accounts store and its parts, and the sign-in and account pages;
- ``social/``: people as others see them: the directory (AS2), following, the inbox;
- ``images/``: what is accepted and how it comes in, the store, the REST API, the gallery;
- ``operations/``: for operators: the page, ``/metrics``, telemetry, the trace index.

Templates and static files stay in ``templates/`` and ``static/`` beside this file.
"""
