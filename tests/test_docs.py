"""The published contract is generated from the registry and committed up to date."""

from __future__ import annotations

from pathlib import Path

import pytest

from dovecote import topics
from dovecote.tools import docs


def test_committed_docs_match_the_registry() -> None:
    assert docs.main(["--check"]) == 0, "run `python -m dovecote.tools.docs` and commit the result"


def test_every_topic_is_in_the_table_with_its_qos_and_retain() -> None:
    text = docs.TOPICS_MD.read_text()
    for t in topics.all_topics():
        row = next(line for line in text.splitlines() if f"`dovecote/{t.pattern}`" in line)
        cells = [c.strip() for c in row.split("|")]
        assert cells[3] == str(t.qos)
        assert cells[4] == ("yes" if t.retain else "no")


def test_a_schema_no_topic_uses_is_stale_and_make_docs_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(docs, "PROJECT", tmp_path)
    monkeypatch.setattr(docs, "TOPICS_MD", tmp_path / "docs" / "topics.md")
    monkeypatch.setattr(docs, "ASYNCAPI_YAML", tmp_path / "docs" / "asyncapi.yaml")
    monkeypatch.setattr(docs, "SCHEMA_DIR", tmp_path / "docs" / "schemas")
    assert docs.main([]) == 0
    orphan = tmp_path / "docs" / "schemas" / "RenamedLongAgo.json"
    orphan.write_text("{}")
    capsys.readouterr()
    assert docs.main(["--check"]) == 1
    assert "docs/schemas/RenamedLongAgo.json" in capsys.readouterr().out
    assert docs.main([]) == 0 and not orphan.exists()
    assert docs.main(["--check"]) == 0
