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


def test_measured_skips_reads_back_what_render_wrote() -> None:
    suite = runner.SUITES["paxos_1node"]
    result = runner.parse(suite, 0, "", 1.0)
    result.skips = [("a (m)", "reason a"), ("b (m)", "reason a"), ("c (m)", "x | y")]
    other = runner.parse(runner.SUITES["stock_sqlite"], 0, "", 1.0)
    other.skips = [("d (m)", "reason a")]
    text = skips_doc.render({"paxos_1node": result, "stock_sqlite": other})
    assert skips_doc.measured_skips(text, "paxos_1node") == {"reason a": 2, "x \\| y": 1}
    assert skips_doc.measured_skips(text, "stock_sqlite") == {"reason a": 1}
    assert skips_doc.measured_skips(text, "paxos_3node") == {}
