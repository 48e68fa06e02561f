"""What ``dovecote.as2.Model``'s docstring promises, held to it."""

from __future__ import annotations

from typing import Literal

import msgspec
import pytest

from dovecote import activity as act
from dovecote.as2 import Model


def test_a_required_field_after_an_optional_one_needs_kw_only_on_its_own_class() -> None:
    with pytest.raises(TypeError, match="cannot follow optional fields"):

        class Loose(Model):
            note: str = ""
            count: int  # type: ignore[misc]  # what mypy says too

    class Strict(Model, kw_only=True):
        note: str = ""
        count: int

    assert Strict(count=2).count == 2
    with pytest.raises(TypeError):
        Strict("x", 2)  # type: ignore[call-arg]  # keywords only, as it says


def test_unknown_fields_are_ignored_and_defaults_left_out() -> None:
    class Thing(Model):
        type: Literal["Thing"]
        size: int = 0

    decoded = msgspec.json.decode(b'{"type": "Thing", "colour": "teal"}', type=Thing)
    assert decoded == Thing(type="Thing")
    assert act.encode(decoded) == b'{"type":"Thing"}'
