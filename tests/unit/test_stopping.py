"""The exit status of a stopped worker: 0 unless SWEEPER_STOPPED_EXIT_CODE says otherwise, checked."""

from __future__ import annotations

import pytest

from sweeper.stopping import stopped_exit_code


def test_zero_unless_set(monkeypatch) -> None:
    monkeypatch.delenv("SWEEPER_STOPPED_EXIT_CODE", raising=False)
    assert stopped_exit_code() == 0
    monkeypatch.setenv("SWEEPER_STOPPED_EXIT_CODE", "143")
    assert stopped_exit_code() == 143


@pytest.mark.parametrize("value", ["256", "-1", "x", "", "1.5"])
def test_a_bad_value_is_one_line_and_exit_2(value: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SWEEPER_STOPPED_EXIT_CODE", value)
    with pytest.raises(SystemExit) as stopped:
        stopped_exit_code()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "from 0 to 255" in err and repr(value) in err
