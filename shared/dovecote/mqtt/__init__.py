"""paho-mqtt on the asyncio event loop: the only package of Dovecote that imports paho.

``Connection`` (``connection.py``) is what the runtime and the tools use: the facade over
the socket on the event loop (``loop_socket.py``) and the reconnecting (``reconnect.py``).
"""

from dovecote.backoff import Backoff as Backoff  # re-exported: mqtt.Backoff
from dovecote.errors import BusError as BusError  # re-exported: mqtt.BusError
from dovecote.mqtt.connection import BACKOFF as BACKOFF
from dovecote.mqtt.connection import Connection as Connection
from dovecote.mqtt.messages import Message as Message
from dovecote.mqtt.messages import Will as Will

__all__ = ["BACKOFF", "Backoff", "BusError", "Connection", "Message", "Will"]
