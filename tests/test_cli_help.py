"""Every subcommand's ``--help`` explains itself with an example an operator can adapt."""

from __future__ import annotations

import pytest

from relstorage_paxos.cli import main


@pytest.mark.parametrize("command", ["init", "serve", "stop", "status"])
def test_every_subcommand_help_has_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert f"example:\n  relstorage-paxos {command} " in text, text
    assert "--data-dir" in text
