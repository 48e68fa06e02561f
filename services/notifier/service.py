"""Notifier handlers: who follows the actor? One notification each, on their own topic.

| listens to                                   | publishes                  |
|----------------------------------------------|----------------------------|
| events/image/created                         | users/{user}/notifications |
| events/build/succeeded, events/build/failed  | users/{user}/notifications |

Followers are not on the bus: the notifier GETs the actor's ``followers`` collection from
the gateway's user directory, every time (a follow made a second ago counts).
"""

from __future__ import annotations

from dovecote import Bus, Delivery, Service, Unprocessable, handles, topics
from dovecote import activity as act
from dovecote.config import Settings
from dovecote.resources import Resources
from services.notifier import messages


class Notifier(Service):
    name = "notifier"

    def __init__(self, bus: Bus, settings: Settings) -> None:
        super().__init__(bus, settings)
        self.gateway = Resources(settings.public_url)

    async def setup(self) -> None:
        await self.gateway.open()

    async def teardown(self) -> None:
        await self.gateway.close()

    @handles(topics.IMAGE_CREATED)
    async def on_image_created(self, activity: act.ImageCreated, _: Delivery) -> None:
        for person in await self.followers(activity.actor):
            self.send(person, activity, messages.image_summary(activity))

    @handles(topics.BUILD_SUCCEEDED, topics.BUILD_FAILED)
    async def on_build_finished(self, activity: act.BuildUpdated, _: Delivery) -> None:
        build = activity.object
        requester = build.attributedTo
        if requester is None or requester.type != "Person":
            self.log.info("%s has nobody to tell [context=%s]", build.name, activity.context)
            return
        # The person who asked hears how it went, and so do their followers.
        for person in [requester, *await self.followers(requester)]:
            self.send(person, activity, messages.build_summary(build, requester, person))

    async def followers(self, person: act.Actor) -> list[act.Actor]:
        if person.followers is None:
            return []
        try:
            return messages.people(await self.gateway.get_json(person.followers))
        except ValueError as exc:
            raise Unprocessable(f"{person.followers}: {exc}") from None

    def send(self, person: act.Actor, cause: act.Activity, summary: str) -> None:
        user = messages.username(person)
        if user is None:
            self.log.warning("%s has no valid user id; not notified", person.id)
            return
        note = messages.notification(self.bus.actor, person, cause, summary)
        self.bus.publish(topics.NOTIFICATION, note, user=user)
        self.log.info("notified %s: %s [context=%s]", user, summary, note.get("context"))
