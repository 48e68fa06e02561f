"""docs/adding-a-service.md shows the tweeter's real code: every Python block in the guide
is a verbatim part of a file in services/tweeter/ (or of the service template, or of the
manifest, for a service in another language), so the guide cannot drift from it."""

from __future__ import annotations

import re

from dovecote.project import PROJECT

GUIDE = PROJECT / "docs" / "adding-a-service.md"


def test_every_code_block_of_the_guide_is_in_the_tweeter() -> None:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    sources = [p.read_text() for p in sorted((PROJECT / "services" / "tweeter").glob("*.py"))]
    sources.append((PROJECT / "services" / "federation.py").read_text())
    # And the template new-service writes (Keeping state): run by test_scaffold's new service.
    template = PROJECT / "shared" / "dovecote" / "tools" / "templates" / "service"
    sources += [p.read_text() for p in sorted(template.glob("*.py.tmpl"))]
    assert len(blocks) >= 3
    for block in blocks:
        assert any(block in source for source in sources), block[:200]
