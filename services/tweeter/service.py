"""The tweeter: a short public post for every uploaded image (the seed's sixth subscriber).

- listens to ``events/image/created`` (the gateway's, one per upload);
- publishes ``events/tweet/created``, its own topic (``topics.py``): a Note whose text is
  also the activity's ``summary``, which is what the dashboard's live feed shows;
- and the same Note retained on ``state/tweeter``: the dashboard's "Tweets" card.

It keeps nothing: the tweet's id is made from the image's, so a redelivered upload (at
least once) makes the same tweet, and subscribers that deduplicate on ids see it once.
"""

from __future__ import annotations

from dovecote import Delivery, Service, handles
from dovecote import activity as act
from services.gateway import topics as gateway_topics
from services.tweeter import topics as own


def tweet_text(image: gateway_topics.Image, who: str) -> str:
    """Who shared which title, its size and its URL; the title is cut to fit 280."""
    tail = f"” ({image.width}×{image.height}) {image.url}"
    head = f"{who} shared “"
    room = own.TWEET_LENGTH - len(head) - len(tail)
    title = image.name if len(image.name) <= room else image.name[: max(room - 1, 0)] + "…"
    return (head + title + tail)[: own.TWEET_LENGTH]


def tweet_id(image_id: str) -> str:
    return act.derived_id(f"tweet:{image_id}")  # the id it always had


class Tweeter(Service):
    name = "tweeter"

    @handles(gateway_topics.IMAGE_CREATED)
    async def on_image_created(self, activity: gateway_topics.ImageCreated, _: Delivery) -> None:
        image, uploader = activity.object, activity.actor
        text = tweet_text(image, uploader.name or uploader.id)
        tweet = own.Tweet(
            type="Note",
            id=tweet_id(image.id),
            content=text,
            inReplyTo=activity.id,
            url=image.url,
            attributedTo=uploader,
        )
        context = activity.context or activity.id
        created = own.TweetCreated(
            **act.envelope(act.derived_id(activity.id, "tweeted")),  # redelivered: the same
            type="Create",
            actor=self.bus.actor,
            object=tweet,
            context=context,
            summary=text,
        )
        self.bus.publish(own.TWEETED, created)
        latest = own.LatestTweet(
            **act.envelope(act.derived_id(activity.id, "latest")),  # redelivered: the same
            type="Update",
            actor=self.bus.actor,
            object=tweet,
            context=context,
        )
        self.bus.publish(own.LATEST, latest)
        self.log.info("tweeted about %s [context=%s]", image.id, context)
