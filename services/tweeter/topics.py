"""The tweeter's contract: the topics it publishes and their payloads.

A service that reads them imports this module, the one module of the tweeter another
service may import. ``dovecote new-service`` listed it in ``services/contracts.py``, so
``make docs`` documents the topics in docs/topics.md and docs/asyncapi.yaml; the runtime
lets the tweeter, and only the tweeter (the ``publisher``), publish them; the gateway
forwards every ``events/#`` topic to the dashboard's live feed, and shows the retained
``state/tweeter`` as a card, as its ``display`` says.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from dovecote import activity as act
from dovecote.display import Display, Field
from dovecote.topics import Topic, register

TWEET_LENGTH = 280


class Tweet(act.Model):
    """A short public post about an upload: an AS2 Note."""

    type: Literal["Note"]
    id: Annotated[
        act.Iri, act.doc("Made from the image's id: a redelivered upload makes the same tweet.")
    ]
    content: Annotated[str, Meta(max_length=TWEET_LENGTH), act.doc("The text, ≤ 280 characters.")]
    inReplyTo: Annotated[act.Iri, act.doc("The id of the upload's `Create` activity.")]
    url: Annotated[act.Iri, act.doc("The uploaded image's URL.")]
    attributedTo: Annotated[act.Actor | None, act.doc("The person who uploaded the image.")] = None


class TweetCreated(act.Activity):
    """The tweeter posted a Note about an uploaded image."""

    type: Literal["Create"]
    object: Annotated[Tweet, act.doc("The tweet.")]


TWEETED = register(
    Topic(
        "events/tweet/created",
        "tweeter",
        1,
        False,
        TweetCreated,
        "The tweeter posted a Note (at most 280 characters) about an uploaded image.",
        actor="the tweeter; `object.attributedTo` is the person who uploaded the image",
    )
)


class LatestTweet(act.Activity):
    """The tweeter's latest tweet, kept at the broker for pages that open later."""

    type: Literal["Update"]
    object: Annotated[Tweet, act.doc("The latest tweet.")]


LATEST = register(
    Topic(
        "state/tweeter",
        "tweeter",
        1,
        True,
        LatestTweet,
        "The latest tweet (retained); the dashboard shows it as a card.",
        actor="the tweeter",
        display=Display(
            "Tweets",
            hint="the latest",
            fields=(
                Field("Tweet", "object.content"),
                Field("About a photo by", "object.attributedTo"),
                Field("Photo", "object.url", "link"),
                Field("When", "published", "time"),
            ),
        ),
    )
)
