"""Notifier handlers: who follows the actor? One notification each, on their own topic.

| listens to                                   | publishes                  |
|----------------------------------------------|----------------------------|
| events/image/created                         | users/{user}/notifications |
| events/build/succeeded, events/build/failed  | users/{user}/notifications |
| events/people/followed                       | users/{user}/notifications |
| commands/notifier/inbox (a page's View)      | replies/notifier/{request} |
| commands/notifier/read (Mark all read)       | users/{user}/inbox         |

Followers are not on the bus: the notifier GETs the actor's ``followers`` collection from
the gateway's user directory, every time (a follow made a second ago counts).

It owns the notifications, so it keeps each person's inbox (``inbox.py``: ``INBOX_DB``, a
SQLite file, or the shared ``DATABASE_URL``): the last ``INBOX_SIZE``, stored before they are
published, so a page rendered after a notification was sent shows it, and what was read stays
read across restarts. The notifications of one read of the socket commit together.
"""

from __future__ import annotations

import msgspec

from dovecote import Bus, Delivery, Service, Unprocessable, handles
from dovecote import activity as act
from dovecote.config import Settings
from dovecote.resources import Resources
from services.builder import topics as builder_topics
from services.gateway import topics as gateway_topics
from services.notifier import messages
from services.notifier import topics as notifier_topics
from services.notifier.inbox import InboxStore, Note

KEPT = msgspec.json.Decoder(
    notifier_topics.Notification
)  # the inbox keeps notifications as published


def kept(note: bytes) -> notifier_topics.Notification:
    """A kept notification, to send again as it was published (``published`` to the ms)."""
    decoded = KEPT.decode(note)
    return msgspec.structs.replace(decoded, published=act.Instant.of(decoded.published))


class Notifier(Service):
    name = "notifier"

    def __init__(self, bus: Bus, settings: Settings) -> None:
        super().__init__(bus, settings)
        self.gateway = Resources(settings.public_url)
        self.inbox = InboxStore.at(settings, "INBOX_DB", settings.data_dir / "inbox.sqlite3")
        self.inbox_size = settings.get_int("INBOX_SIZE", 50, 1, 200)

    async def setup(self) -> None:
        self.inbox.open()
        await self.gateway.open()

    async def teardown(self) -> None:
        await self.gateway.close()
        self.inbox.close()

    @handles(gateway_topics.IMAGE_CREATED)
    async def on_image_created(self, activity: gateway_topics.ImageCreated, _: Delivery) -> None:
        people = await self.followers(activity.actor)
        await self.send(activity, [(p, messages.image_summary(activity)) for p in people])

    @handles(builder_topics.BUILD_SUCCEEDED, builder_topics.BUILD_FAILED)
    async def on_build_finished(self, activity: builder_topics.BuildUpdated, _: Delivery) -> None:
        build = activity.object
        requester = build.attributedTo
        if requester is None or requester.type != "Person":
            self.log.info("%s has nobody to tell [context=%s]", build.name, activity.context)
            return
        # The person who asked hears how it went, and so do their followers.
        people = [requester, *await self.followers(requester)]
        await self.send(
            activity, [(p, messages.build_summary(build, requester, p)) for p in people]
        )

    @handles(gateway_topics.PERSON_FOLLOWED)
    async def on_followed(self, activity: gateway_topics.Followed, _: Delivery) -> None:
        await self.send(activity, [(activity.object, messages.follow_summary(activity))])

    @handles(gateway_topics.INBOX_VIEW)
    async def on_view(self, command: gateway_topics.ViewInbox, _: Delivery) -> None:
        user = messages.username(command.actor)
        if user is None:
            self.log.warning("inbox asked for %s, who has no user id", command.actor.id)
            return
        counts = self.inbox.counts(user)
        notes = self.inbox.newest(user, command.object.limit)
        inbox = notifier_topics.Inbox(
            type="OrderedCollection",
            totalItems=counts.total,
            unread=counts.unread,
            orderedItems=[kept(n) for n in notes],
        )
        self.reply(command, inbox)

    @handles(gateway_topics.INBOX_READ)
    async def on_read(self, command: gateway_topics.ReadInbox, _: Delivery) -> None:
        user = messages.username(command.actor)
        if user is None:
            self.log.warning("%s has no user id: nothing marked read", command.actor.id)
            return
        changed = self.inbox.mark_read(user, command.object.upTo)
        counts = self.inbox.counts(user)
        state = notifier_topics.InboxState(
            type="OrderedCollection", totalItems=counts.total, unread=counts.unread
        )
        update = notifier_topics.InboxUpdated(
            **act.envelope(messages.inbox_state_id(command.id, counts.total, counts.unread)),
            type="Update",
            actor=self.bus.actor,
            object=state,
            context=command.context or command.id,
        )
        self.bus.publish(notifier_topics.INBOX_STATE, update, user=user)
        self.log.info("%s read %d notification(s); %d unread", user, changed, counts.unread)

    def reply(self, command: act.Activity, inbox: notifier_topics.Inbox) -> None:
        request = act.request_key(command.id)
        if request is None:
            self.log.warning("inbox request %s has no urn:uuid id: nowhere to answer", command.id)
            return
        answer = notifier_topics.InboxReply(
            **act.envelope(),
            type="Accept",
            actor=self.bus.actor,
            object=inbox,
            inReplyTo=command.id,
        )
        self.bus.publish(notifier_topics.INBOX_REPLY, answer, request=request)

    async def followers(self, person: act.Actor) -> list[act.Actor]:
        if person.followers is None:
            return []
        try:
            return messages.people(await self.gateway.get_json(person.followers))
        except ValueError as exc:
            raise Unprocessable(f"{person.followers}: {exc}") from None

    async def send(self, cause: act.Activity, told: list[tuple[act.Actor, str]]) -> None:
        """Notify each person of ``cause`` with its summary."""
        notes: list[tuple[str, notifier_topics.Notification]] = []
        for person, summary in told:
            user = messages.username(person)
            if user is None:
                self.log.warning("%s has no valid user id; not notified", person.id)
                continue
            notes.append((user, messages.notification(self.bus.actor, person, cause, summary)))
        if not notes:
            return
        # Kept before they are published: a page rendered from now on lists them. A
        # redelivered cause makes the same ids, kept once (and published again: subscribers
        # skip them).
        kept = [Note(user, note.id, act.encode(note)) for user, note in notes]
        await self.inbox.add(kept, self.inbox_size)
        for user, note in notes:
            self.bus.publish(notifier_topics.NOTIFICATION, note, user=user)
            self.log.info("notified %s: %s [context=%s]", user, note.summary, note.context)
