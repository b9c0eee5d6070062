"""The worker's storage keeps its own trial in memory and still sees what the database holds.

Two "workers" (each its own HeldTrialStorage on the same database) interleave their trials; at
every step, once each has flushed, what each sees must equal what plain Optuna reads from the
database, on PostgreSQL and on SQLite.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from sweeper import storage
from sweeper.heldtrial import HeldTrialStorage

NAME = "held"


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return storage.resolve_url(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'held.db'}"


def _worker_study(url: str) -> optuna.Study:
    return optuna.create_study(
        storage=HeldTrialStorage(optuna.storages.RDBStorage(url)), study_name=NAME, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(n_startup_trials=2, seed=0, constant_liar=True), pruner=optuna.pruners.HyperbandPruner(1, 9, 3),
    )  # fmt: skip


def _view(trials: list[optuna.trial.FrozenTrial]) -> list[tuple]:
    return [
        (t.number, t.state, t.params, t.values, t.intermediate_values, t.user_attrs, t.system_attrs) for t in trials
    ]


def _database(url: str) -> list[tuple]:
    return _view(optuna.load_study(study_name=NAME, storage=url).get_trials())


def _run(trial: optuna.Trial, values: list[float]) -> bool:
    trial.suggest_float("x", 0, 1)
    trial.suggest_categorical("c", [True, False])
    trial.set_user_attr("worker", "me")
    for step, value in enumerate(values, start=1):
        trial.report(value, step)
        if trial.should_prune():
            return True
    return False


def test_each_worker_sees_what_the_database_holds(url: str) -> None:
    a, b = _worker_study(url), _worker_study(url)
    a.enqueue_trial({"x": 0.5, "c": True})
    for round_ in range(4):
        mine, theirs = a.ask(), b.ask()  # a's is the queued trial first: popped from WAITING, then held
        pruned = _run(mine, [0.1 * round_, 0.2, 0.3]), _run(theirs, [0.5, 0.1 * round_, 0.05])
        a._storage.flush()
        b._storage.flush()
        assert _view(a.get_trials()) == _view(b.get_trials()) == _database(url)
        b.tell(theirs, state=TrialState.PRUNED if pruned[1] else TrialState.COMPLETE, values=None if pruned[1] else 0.5)
        assert _view(a.get_trials()) == _database(url)  # b's result reaches a while a still holds its trial
        a.tell(mine, state=TrialState.PRUNED if pruned[0] else TrialState.COMPLETE, values=None if pruned[0] else 0.3)
        assert _view(a.get_trials()) == _view(b.get_trials()) == _database(url)
    assert a.trials[0].params == {"x": 0.5, "c": True}


def test_trial_held_while_a_later_trial_finished_is_read_again_when_it_ends(url: str) -> None:
    a, b = _worker_study(url), _worker_study(url)
    mine = a.ask()
    theirs = b.ask()
    b.tell(theirs, 1.0)
    assert [t.state for t in a.get_trials()] == [
        TrialState.RUNNING,
        TrialState.COMPLETE,
    ]  # a's cache moves past its own trial
    a.tell(mine, 2.0)
    assert [(t.state, t.value) for t in a.get_trials()] == [(TrialState.COMPLETE, 2.0), (TrialState.COMPLETE, 1.0)]


def test_trial_reaped_by_another_worker_refuses_writes_and_is_read_again(url: str) -> None:
    a, reaper = _worker_study(url), _worker_study(url)
    mine = a.ask()
    reaper._storage.set_trial_state_values(mine._trial_id, TrialState.FAIL)  # what fail_stale_trials does
    mine.report(0.5, 1)  # kept for the next write, which the database refuses
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        a._storage.flush()
    again = a.ask()  # the worker moves on to a new trial
    reaper._storage.set_trial_state_values(again._trial_id, TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # the end's write is refused too
        a.tell(again, 1.0)
    a.ask()
    assert [t.state for t in a.get_trials()] == [TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING]


def test_reading_the_study_does_not_read_the_held_trial_back(url: str) -> None:
    a = _worker_study(url)
    a.tell(a.ask(), 1.0)
    trial = a.ask()
    _run(trial, [0.5])
    statements: list[str] = []
    sqlalchemy.event.listen(
        a._storage._backend.engine, "before_cursor_execute", lambda *args: statements.append(args[2])
    )
    assert a.get_trials()[-1].intermediate_values == {1: 0.5}
    trial.should_prune()
    a.sampler.sample_relative(
        a, a._storage.get_trial(trial._trial_id), {"x": optuna.distributions.FloatDistribution(0, 1)}
    )
    reads = [
        s
        for s in statements
        if s.lstrip().startswith("SELECT") and "trials.trial_id >" not in s and "FROM studies" not in s
    ]
    assert not reads, reads  # only "trials newer than the held one?" and the study check, no rows of the held trial


def test_writes_wait_for_flush_or_the_end_and_then_land_in_one_transaction(url: str) -> None:
    a = _worker_study(url)
    first = a.ask()
    _run(first, [0.1])  # the study's first use of each parameter is checked against the database, as Optuna does
    a.tell(first, 0.1)
    trial = a.ask()
    statements: list[str] = []
    sqlalchemy.event.listen(
        a._storage._backend.engine, "before_cursor_execute", lambda *args: statements.append(args[2])
    )
    _run(trial, [0.5, 0.6])
    assert not [s for s in statements if not s.lstrip().startswith("SELECT")]  # nothing written yet
    assert _database(url)[-1][2:] == ({}, None, {}, {}, {})  # params, values, epochs, attributes: not there
    del statements[:]
    a._storage.flush()
    writes = [s.split()[2] for s in statements if s.lstrip().startswith("INSERT")]
    assert len(writes) == len(set(writes)) and {
        "trial_params",
        "trial_user_attributes",
        "trial_intermediate_values",
    } <= set(writes)
    assert _view(a.get_trials()) == _database(url)
    trial.report(0.7, 3)
    trial.set_user_attr("note", ("a", 1))  # stored as JSON: what the worker sees is what is read back
    a.tell(trial, 0.7)
    del statements[:]
    seen = _view(a.get_trials())
    assert len(statements) == 2, statements  # the study check and "any newer trials?": the ended trial is not read back
    assert seen == _database(url)
    assert a.trials[-1].user_attrs["note"] == ["a", 1] and a.trials[-1].intermediate_values == {1: 0.5, 2: 0.6, 3: 0.7}


def test_trial_created_between_the_read_and_the_claim_is_read_before_holding(url: str) -> None:
    """Creating a trial skips the read when every lower number is cached; here one is not."""
    a, b = _worker_study(url), _worker_study(url)
    a.tell(a.ask(), 1.0)
    create = a._storage._backend._create_new_trial

    def someone_else_first(*args: object, **kwargs: object) -> optuna.trial.FrozenTrial:
        b.ask()  # e.g. an enqueue from the CLI, which takes no study lock
        return create(*args, **kwargs)

    a._storage._backend._create_new_trial = someone_else_first
    mine = a.ask()
    a._storage._backend._create_new_trial = create
    a.tell(mine, 2.0)
    assert [t.number for t in a.get_trials()] == [0, 1, 2]
    assert _view(a.get_trials()) == _database(url)
