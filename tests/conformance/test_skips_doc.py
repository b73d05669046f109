"""SKIPS.md holds the current skip tables of skips.py (the measured part is checked by
test_conformance.py against each run)."""

from __future__ import annotations

from tests.conformance import runner, skips, skips_doc


def test_skips_md_has_the_current_tables() -> None:
    text = runner.SKIPS_MD.read_text()
    assert skips_doc.tables_section() in text, (
        "SKIPS.md is out of date: python -m tests.conformance.runner --write-skips"
    )


def test_every_skip_has_a_reason_and_a_kind() -> None:
    kinds = {"environment", "suite", "unsupported", "adapter-bug"}
    for skip in (*skips.STOCK_SQLITE_SKIPS, *skips.PAXOS_SKIPS):
        assert skip.reason.strip(), skip
        assert skip.kind in kinds, skip
