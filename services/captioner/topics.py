"""The captioner's contract: the topic it publishes for every uploaded image, and its payload.

The captioner is written in Node.js (``examples/node-captioner``); it validates what it
reads and what it makes against ``docs/schemas/``, which ``make docs`` writes from here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from dovecote.activity import Activity, Iri, Model, doc
from dovecote.topics import Topic, register

CAPTION_LENGTH = 280


class Caption(Model):
    """A one-line description of an image, for screen readers and feeds: an AS2 Note."""

    type: Literal["Note"]
    id: Annotated[
        Iri,
        doc("Made from the image's id: a redelivered upload makes the same caption."),
    ]
    content: Annotated[
        Annotated[str, Meta(min_length=1, max_length=CAPTION_LENGTH)],
        doc("The caption (its alt text), ≤ 280 characters."),
    ]
    inReplyTo: Annotated[
        Iri,
        doc("The image's IRI (its `object.id` in `events/image/created`)."),
    ]


class ImageCaptioned(Activity):
    """The captioner described an uploaded image; ``summary`` is the caption too."""

    type: Literal["Create"]
    object: Annotated[
        Caption,
        doc("The caption."),
    ]


IMAGE_CAPTIONED = register(
    Topic(
        "events/image/captioned",
        "captioner",
        1,
        False,
        ImageCaptioned,
        "The captioner (a service in Node.js) described an uploaded image in one line: its "
        "alt text, in `object.content`. `context` is the upload's.",
        actor="the captioner",
    )
)
