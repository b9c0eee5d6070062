"""Finding a study that sweeper created in a store (`sweeper.reporting.study_list` lists them all)."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial

from sweeper.errors import SweeperError
from sweeper.storage import Store
from sweeper.storage.records import StudyRecord
from sweeper.storage.urls import mask


def value_of(trial: FrozenTrial) -> float:
    """A COMPLETE trial's val_acc: sweeper's studies have one objective, so Optuna always stores one."""
    value = trial.value
    if value is None:
        raise RuntimeError(f"trial {trial.number} is COMPLETE without a value")
    return value


def load_study(store: Store, name: str) -> optuna.Study:
    """A study that sweeper created; any other is refused in one line (exit 2), never misread.

    The report's answer assumes sweeper's single maximized val_acc and its three parameters; a
    study written by another Optuna program may minimize, have several objectives or other
    parameters, so its "best" would be wrong. optuna-dashboard shows any study as it is.
    """
    try:
        study = optuna.load_study(study_name=name, storage=store.storage)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(store.storage))
        known = ", ".join(names) if names else "none yet"
        raise SweeperError(f"no study named {name!r} in {mask(store.url)} (studies: {known})") from None
    if not StudyRecord.from_study(study).created_by_sweeper:
        raise SweeperError(
            f"study {name!r} was not created by sweeper, so its report would misread it; "
            "'sweeper dashboard' shows any Optuna study",
            2,
        )
    return study
