"""The exit status of a stopped worker: 0 unless SWEEPER_STOPPED_EXIT_CODE says otherwise, checked
in the process's first instant, before anything runs."""

from __future__ import annotations

import pytest

from sweeper.stopping import stopped_exit_code


def test_stopped_exit_code_is_0_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWEEPER_STOPPED_EXIT_CODE", raising=False)
    assert stopped_exit_code() == 0
    monkeypatch.setenv("SWEEPER_STOPPED_EXIT_CODE", "143")
    assert stopped_exit_code() == 143


@pytest.mark.parametrize("value", ["", "-1", "256", "sigterm", "1.5"])
def test_a_bad_stopped_exit_code_is_a_clear_error(value: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SWEEPER_STOPPED_EXIT_CODE", value)
    with pytest.raises(SystemExit) as exited:
        stopped_exit_code()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SWEEPER_STOPPED_EXIT_CODE must be a number from 0 to 255" in err
    assert repr(value) in err
