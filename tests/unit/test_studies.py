"""Finding a study sweeper created: an unknown name lists the others; a study sweeper did not create is refused."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweeper.errors import SweeperError
from sweeper.storage import connect, studies
from sweeper.storage.records import StudyRecord


def test_a_study_is_found_by_name_and_others_are_refused_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    mine = optuna.create_study(study_name="mine", storage=url)
    StudyRecord("mine", space_fingerprint="f").write(mine, "space_fingerprint")
    optuna.create_study(study_name="theirs", storage=url)
    store = connect(url, create=False)
    try:
        assert studies.load_study(store, "mine").study_name == "mine"
        with pytest.raises(SweeperError, match=r"no study named 'mne' in sqlite:///.* \(studies: mine, theirs\)"):
            studies.load_study(store, "mne")
        with pytest.raises(SweeperError, match="'theirs' was not created by sweeper") as refused:
            studies.load_study(store, "theirs")
    finally:
        store.close()
    assert refused.value.exit_code == 2 and "\n" not in str(refused.value)
