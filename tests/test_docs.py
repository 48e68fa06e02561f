"""The published contract is generated from the registry and committed up to date."""

from __future__ import annotations

from shared import docs, topics


def test_committed_docs_match_the_registry() -> None:
    assert docs.main(["--check"]) == 0, "run `python -m shared.docs` and commit the result"


def test_every_topic_is_in_the_table_with_its_qos_and_retain() -> None:
    text = docs.TOPICS_MD.read_text()
    for t in topics.all_topics():
        row = next(line for line in text.splitlines() if f"`dovecote/{t.pattern}`" in line)
        cells = [c.strip() for c in row.split("|")]
        assert cells[3] == str(t.qos)
        assert cells[4] == ("yes" if t.retain else "no")
