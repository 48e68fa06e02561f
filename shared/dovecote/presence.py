"""A worker on ``services/<service>/<instance>``: a retained Join while it is usable, a Leave
when it stops (cleanly, or as its Last Will when it does not)."""

from __future__ import annotations

import os
from typing import Literal

from dovecote import activity as act
from dovecote import topics
from dovecote.mqtt import Will


class Presence:
    """What one worker says of itself, and where."""

    def __init__(self, root: str, service: str, instance: str) -> None:
        self.service = service
        self.instance = instance
        self.topic = topics.PRESENCE.address(root, service=service, instance=instance)

    def join(self) -> bytes:
        return self._say("Join", "online")

    def leave(self) -> bytes:
        return self._say("Leave", "offline")

    def will(self) -> Will:
        """The Leave the broker publishes should this worker vanish without one."""
        return Will(self.topic, self.leave())

    def _say(self, kind: Literal["Join", "Leave"], status: Literal["online", "offline"]) -> bytes:
        worker = act.ServiceInstance(
            type="Service",
            id=f"urn:dovecote:service:{self.service}:{self.instance}",
            name=self.service,
            instance=self.instance,
            status=status,
            pid=os.getpid(),
            host=os.uname().nodename[:200],
        )
        return act.encode(
            act.Presence(
                **act.envelope(), type=kind, actor=act.service(self.service), object=worker
            )
        )
