"""The resizer's contract: the topic it publishes when an image's thumbnails are stored, and
its payload.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from dovecote.activity import Activity, Iri, Model, Name, doc
from dovecote.topics import Topic, register
from services.gateway.topics import ImageMediaType, Pixels


class Thumbnail(Model):
    """One re-encoded, smaller copy of an image (an AS2 ``Link`` with its dimensions)."""

    type: Literal["Link"]
    href: Annotated[
        Iri,
        doc("Where the thumbnail's bytes are (under the gateway's public URL)."),
    ]
    mediaType: Annotated[
        ImageMediaType,
        doc("The thumbnail's format."),
    ]
    width: Annotated[
        Pixels,
        doc("Pixels."),
    ]
    height: Annotated[
        Pixels,
        doc("Pixels."),
    ]
    rel: Annotated[
        Literal["preview"],
        doc("Always `preview`."),
    ] = "preview"


class ResizedImage(Model):
    type: Literal["Image"]
    id: Annotated[
        Iri,
        doc("The original image's IRI (as in `events/image/created`)."),
    ]
    url: Annotated[
        Iri,
        doc("The original's URL."),
    ]
    preview: Annotated[
        Annotated[list[Thumbnail], Meta(min_length=1, max_length=8)],
        doc("The thumbnails, smallest first."),
    ]
    name: Annotated[
        Name | None,
        doc("The image's title."),
    ] = None


class ImageResized(Activity):
    """The resizer stored thumbnails of an image; ``object.preview`` lists them."""

    type: Literal["Update"]
    object: Annotated[
        ResizedImage,
        doc("The image with its thumbnails."),
    ]


IMAGE_RESIZED = register(
    Topic(
        "events/image/resized",
        "resizer",
        1,
        False,
        ImageResized,
        "Thumbnails of an image are stored; `object.preview` lists their URLs, smallest first.",
        actor="the resizer",
    )
)
