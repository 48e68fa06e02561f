"""The tweeter: a short public post for every uploaded image (the seed's sixth subscriber).

- listens to ``events/image/created`` (the gateway's, one per upload);
- publishes ``events/tweet/created``, its own topic (``topics.py``): a Note whose text is
  also the activity's ``summary``, which is what the dashboard's live feed shows;
- and the same Note retained on ``state/tweeter``: the dashboard's "Tweets" card.

It keeps nothing: the tweet's id is made from the image's, so a redelivered upload (at
least once) makes the same tweet, and subscribers that deduplicate on ids see it once.
"""

from __future__ import annotations

import uuid

from dovecote import Delivery, Service, handles, topics
from dovecote import activity as act
from services.tweeter import topics as own


def tweet_text(image: act.Image, who: str) -> str:
    """Who shared which title, its size and its URL; the title is cut to fit 280."""
    tail = f"” ({image.width}×{image.height}) {image.url}"
    head = f"{who} shared “"
    room = own.TWEET_LENGTH - len(head) - len(tail)
    title = image.name if len(image.name) <= room else image.name[: max(room - 1, 0)] + "…"
    return (head + title + tail)[: own.TWEET_LENGTH]


def tweet_id(image_id: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"tweet:{image_id}").urn


class Tweeter(Service):
    name = "tweeter"

    @handles(topics.IMAGE_CREATED)
    async def on_image_created(self, activity: act.ImageCreated, _: Delivery) -> None:
        image, uploader = activity.object, activity.actor
        text = tweet_text(image, uploader.name or uploader.id)
        tweet = {
            "type": "Note",
            "id": tweet_id(image.id),
            "content": text,
            "inReplyTo": activity.id,
            "url": image.url,
            "attributedTo": act.to_builtins(uploader),
        }
        context = activity.context or activity.id
        created = act.new("Create", self.bus.actor, tweet, context=context, summary=text)
        created["id"] = act.derived_id(activity.id, "tweeted")  # a redelivery: the same tweet
        self.bus.publish(own.TWEETED, created)
        latest = act.new("Update", self.bus.actor, tweet, context=context)
        latest["id"] = act.derived_id(activity.id, "latest")  # a redelivery: the same one
        self.bus.publish(own.LATEST, latest)
        self.log.info("tweeted about %s [context=%s]", image.id, context)
