"""A running trial's writes (parameters, attributes, epochs and maybe its end) in one transaction.

Optuna's RDB storage commits every parameter, attribute and intermediate value on its own, each
after two reads of the trial: about 1 ms of SQLAlchemy and a round trip per row. This writes a
batch as one upsert per table into Optuna's own tables, encoded by Optuna's models, after the
same "trial is still running" check under a row lock. Upserts make a retried write harmless.
Optuna is pinned below 6; the tests read the rows back through Optuna on PostgreSQL and SQLite.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState
from sqlalchemy.dialects import postgresql, sqlite


@dataclass
class TrialWrites:
    """Writes to one trial that have not reached the database yet."""

    params: dict[str, tuple[float, BaseDistribution]] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    intermediate_values: dict[int, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.params or self.user_attrs or self.system_attrs or self.intermediate_values)


def write(
    rdb: optuna.storages.RDBStorage,
    trial_id: int,
    writes: TrialWrites,
    end: TrialState | None = None,
    values: Sequence[float] | None = None,
) -> datetime.datetime | None:
    """Write `writes`, then if `end` is given the trial's values and end state; returns its completion time.

    Raises `UpdateFinishedTrialError`, writing nothing, if the trial has already ended.
    """
    insert = postgresql.insert if rdb.engine.name == "postgresql" else sqlite.insert
    with _create_scoped_session(rdb.scoped_session) as session:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        rdb.check_trial_is_updatable(trial_id, trial.state)

        def upsert(model: Any, keys: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
            if rows:
                statement = insert(model).values(rows)
                updated = {column: statement.excluded[column] for column in rows[0] if column not in keys}
                session.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=updated))

        upsert(models.TrialParamModel, ("trial_id", "param_name"), [
            {"trial_id": trial_id, "param_name": name, "param_value": value, "distribution_json": distribution_to_json(dist)}
            for name, (value, dist) in writes.params.items()
        ])  # fmt: skip
        for model, attrs in (
            (models.TrialUserAttributeModel, writes.user_attrs),
            (models.TrialSystemAttributeModel, writes.system_attrs),
        ):
            upsert(
                model,
                ("trial_id", "key"),
                [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()],
            )
        steps = models.TrialIntermediateValueModel
        upsert(steps, ("trial_id", "step"), [
            dict(zip(("trial_id", "step", "intermediate_value", "intermediate_value_type"),
                     (trial_id, step, *steps.intermediate_value_to_stored_repr(value)), strict=False))
            for step, value in writes.intermediate_values.items()
        ])  # fmt: skip
        if end is None:
            return None
        upsert(models.TrialValueModel, ("trial_id", "objective"), [
            dict(zip(("trial_id", "objective", "value", "value_type"), (trial_id, objective, *models.TrialValueModel.value_to_stored_repr(value)), strict=False))
            for objective, value in enumerate(values or [])
        ])  # fmt: skip
        trial.state, trial.datetime_complete = end, datetime.datetime.now()
        return trial.datetime_complete
