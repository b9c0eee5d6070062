"""Every mistake a user can make: a clear one- or two-line error, the right exit code, no traceback,
the database exactly as it was, and never a password on the screen."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hypothesis.strategies as st
import optuna
import pytest
import sqlalchemy
import tomli_w
from hypothesis import HealthCheck, given, settings

from sweeper import cli, storage, studyfile
from sweeper.errors import StudyFileError, SweeperError
from sweeper.fleet import open_study
from sweeper.storage import urls
from tests.conftest import (
    FIXTURE_DATA,
    QUICK_TRAINING,
    ROOT,
    _fresh_database,
    run_sweeper,
    study_file,
    sweeper_command,
    sweeper_main,
)
from tests.fleet import proc_status, trials, wait_for
from tests.pgbouncer import free_port
from tests.pgserver import ThrowawayPostgres

SMOKE_TEXT = (ROOT / "studies" / "smoke.toml").read_text()
LR_BLOCK = "[space.learning_rate]\nlow = 1e-5\nhigh = 1e-2\nlog = true"
assert LR_BLOCK in SMOKE_TEXT


def snapshot(url: str) -> dict[str, list]:
    """Every row of every table: what 'the database holds'."""
    engine = sqlalchemy.create_engine(urls.resolve_url(url), poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            return {
                table: sorted(map(repr, connection.execute(sqlalchemy.text(f'SELECT * FROM "{table}"')).all()))
                for table in sqlalchemy.inspect(connection).get_table_names()
            }
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def populated(pg_server: str) -> Iterator[str]:
    """A database holding the smoke study with one finished trial and its queued baseline."""
    for url in _fresh_database(pg_server):
        spec = studyfile.load(ROOT / "studies" / "smoke.toml")
        store = storage.connect(urls.resolve_url(url))
        study = open_study(store, spec)
        params = {"dropout": 0.3, "batchnorm": True, "learning_rate": 1e-3}
        study.add_trial(optuna.trial.create_trial(value=0.3, params=params, distributions=spec.space.distributions()))
        store.close()
        yield url


def assert_refused(result, code: int, message: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert re.search(message, result.stderr), result.stderr
    assert "Traceback" not in output
    assert len([line for line in result.stderr.splitlines() if line.startswith("sweeper: error")]) == 1
    assert len(result.stderr.split("sweeper: error:", 1)[1].strip().splitlines()) <= 2, result.stderr


STUDY_FILE_MISTAKES = {
    "not-toml": ("budget = 6", "budget = = 6", r"not valid TOML: .*at line 7"),
    "unknown-key": ("epochs = 2", "epocs = 2", r"\[training\] epocs: unknown key \(did you mean 'epochs'\?\)"),
    "wrong-type": ("budget = 6", 'budget = "six"', r"\[study\] budget: Input should be a valid integer"),
    "low-above-high": (
        "low = 0.2\nhigh = 0.5",
        "low = 0.6\nhigh = 0.5",
        r"\[space\] dropout: low \(0.6\) is greater than high \(0.5\)",
    ),
    "dropout-outside": (
        "low = 0.2\nhigh = 0.5",
        "low = 0.2\nhigh = 1.5",
        r"\[space\] dropout: must lie in \[0, 1\), got 0.2..1.5",
    ),
    "lr-not-positive": (
        LR_BLOCK,
        "[space.learning_rate]\nlow = 0\nhigh = 1e-2",
        r"\[space\] learning_rate: must be > 0, got low = 0.0",
    ),
    "log-low-not-positive": (
        LR_BLOCK,
        "[space.learning_rate]\nlow = -1e-3\nhigh = 1e-2\nlog = true",
        r"\[space\] learning_rate: log scale needs low > 0, got -0.001",
    ),
    "empty-choices": (
        "choices = [true, false]",
        "choices = []",
        r"\[space.batchnorm\] choices: List should have at least 1 item",
    ),
    "epochs": ("epochs = 2", "epochs = 0", r"\[training\] epochs: Input should be greater than or equal to 1"),
    "batch-size": (
        "batch_size = 32",
        "batch_size = 0",
        r"\[training\] batch_size: Input should be greater than or equal to 1",
    ),
    "budget": ("budget = 6", "budget = 0", r"\[study\] budget: Input should be greater than or equal to 1"),
    "split-seed": (
        "split_seed = 777",
        f"split_seed = {2**32}",
        r"\[training\] split_seed: Input should be less than or equal to 4294967295",
    ),
    "sampler-seed": ("seed = 42", "seed = -1", r"\[sampler\] seed: Input should be greater than or equal to 0"),
    "empty-name": ('name = "smoke"', 'name = " "', r"\[study\] name: the study name must not be empty"),
    "long-name": (
        'name = "smoke"',
        f'name = "{"s" * 513}"',
        r"\[study\] name: the study name has 513 characters; at most 512",
    ),
    "control-name": (
        'name = "smoke"',
        'name = "smo\\u0007ke"',
        r"\[study\] name: the study name must not contain control characters",
    ),
}


@pytest.mark.parametrize("case", list(STUDY_FILE_MISTAKES))
def test_study_file_mistakes(case: str, populated: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    old, new, message = STUDY_FILE_MISTAKES[case]
    assert old in SMOKE_TEXT
    path = tmp_path / "study.toml"
    path.write_text(SMOKE_TEXT.replace(old, new, 1))
    before = snapshot(populated)
    code = cli.main(
        ["worker", str(path), "--storage", populated]
    )  # in-process: test_missing_study_file runs the real CLI
    assert_refused(_Result(code, "", capsys.readouterr().err), 2, re.escape(str(path)) + ": " + message)
    assert snapshot(populated) == before


@dataclass
class _Result:
    returncode: int
    stdout: str
    stderr: str


def test_missing_study_file(populated: str, cli_env: dict, tmp_path: Path) -> None:
    before = snapshot(populated)
    result = run_sweeper("worker", str(tmp_path / "nope.toml"), "--storage", populated, env=cli_env)
    assert_refused(result, 2, r"nope.toml: no such study file")
    assert snapshot(populated) == before


def test_changed_search_space_is_refused_with_the_difference(populated: str, cli_env: dict, tmp_path: Path) -> None:
    path = tmp_path / "smoke.toml"
    path.write_text(SMOKE_TEXT.replace("low = 0.2\nhigh = 0.5", "low = 0.2\nhigh = 0.45"))
    before = snapshot(populated)
    result = run_sweeper("worker", str(path), "--storage", populated, env=cli_env)
    assert_refused(
        result, 2, r"study 'smoke' was created with another search space \(space.dropout.high: 0.5 -> 0.45\)"
    )
    assert "--allow-space-change" in result.stderr and "new [study] name" in result.stderr
    assert snapshot(populated) == before


@pytest.mark.parametrize(
    "url, code, message",
    [
        ("mongodb://localhost/x", 2, r"unknown storage scheme 'mongodb'"),
        ("mysql://root@127.0.0.1/x", 2, r"unknown storage scheme 'mysql'"),
        ("not a url", 2, r"not a storage URL"),
        ("postgresql://postgres@127.0.0.1:5432/sweeper_no_such_db", 1, r'database "sweeper_no_such_db" does not exist'),
        ("postgresql://u:pw@[::1/x", 2, r"not a storage URL: 'postgresql://u:\*\*\*@\[::1/x'|not a storage URL"),
        ("sqlite:////proc/x.db", 2, r"cannot create the SQLite database /proc/x.db"),
    ],
    ids=["unknown-scheme", "mysql", "not-a-url", "database-missing", "bad-host", "sqlite-unwritable"],
)
def test_storage_mistakes(url: str, code: int, message: str, cli_env: dict, tmp_path: Path) -> None:
    result = run_sweeper("worker", str(ROOT / "studies" / "smoke.toml"), "--storage", url, env=cli_env, cwd=tmp_path)
    assert_refused(result, code, message)


def test_unreachable_host_fails_in_bounded_time_with_visible_retries(cli_env: dict, tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_sweeper(
        "worker", str(ROOT / "studies" / "smoke.toml"), "--storage", "postgresql://u:topsecret@127.0.0.1:1/db",
        env={**cli_env, "SWEEPER_CONNECT_TIMEOUT": "3"}, cwd=tmp_path,
    )  # fmt: skip
    assert time.monotonic() - started < 30
    assert_refused(result, 1, r"storage postgresql://u:\*\*\*@127.0.0.1:1/db unreachable while connecting")
    assert result.stderr.count("retrying in") >= 2
    assert "topsecret" not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def password_pg() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres(password="Pw-s3cret-42")
    server.start()
    yield server
    server.destroy()


def test_wrong_password(password_pg: ThrowawayPostgres, cli_env: dict, tmp_path: Path) -> None:
    url = password_pg.url.replace("Pw-s3cret-42", "Wrong-guess-7")
    started = time.monotonic()
    result = run_sweeper("studies", "--storage", url, env=cli_env, cwd=tmp_path)
    assert_refused(result, 1, r"password authentication failed")
    assert time.monotonic() - started < 20, "a wrong password is not retried"
    assert "Wrong-guess-7" not in result.stdout + result.stderr


def test_schema_from_another_optuna_version(pg_server: str, cli_env: dict, tmp_path: Path) -> None:
    for url in _fresh_database(pg_server):
        optuna.create_study(study_name="old", storage=urls.resolve_url(url))
        engine = sqlalchemy.create_engine(urls.resolve_url(url))
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = 'v3.0.0.d'"))
            connection.execute(sqlalchemy.text("UPDATE version_info SET library_version = '3.0.0'"))
        engine.dispose()
        before = snapshot(url)
        result = run_sweeper("studies", "--storage", url, env=cli_env)
        assert_refused(
            result, 1, r"holds tables set up by optuna 3.0.0.*Back it up, then run: optuna storage upgrade --storage '"
        )
        assert snapshot(url) == before, "never upgraded silently"


def _batch_prefix(tmp_path: Path) -> Path:
    folder = tmp_path / "truncated"
    folder.mkdir()
    for f in FIXTURE_DATA.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "data_batch_3").write_bytes((FIXTURE_DATA / "data_batch_3").read_bytes()[:5000])
    return folder


@pytest.mark.parametrize(
    "make_dir, message",
    [
        (lambda tmp: tmp / "absent", r"data directory .*absent does not exist"),
        (lambda tmp: tmp, r"holds no CIFAR-10 data: expected the cifar-10-batches-py files"),
        (
            lambda tmp: (tmp / "data_batch_1").write_bytes(b"\x00garbage") and tmp,
            r"data_batch_1: not a CIFAR-10 batch file \(corrupt or truncated",
        ),
        (_batch_prefix, r"data_batch_3: not a CIFAR-10 batch file \(corrupt or truncated"),
    ],
    ids=["missing", "empty", "corrupt", "truncated"],
)
def test_data_mistakes(make_dir, message, populated: str, cli_env: dict, tmp_path: Path) -> None:
    data_dir = make_dir(tmp_path)
    before = snapshot(populated)
    env = {**cli_env, "SWEEPER_CACHE_DIR": str(tmp_path / "cache")}
    result = run_sweeper(
        "worker", str(ROOT / "studies" / "smoke.toml"), "--storage", populated, "--data-dir", str(data_dir), env=env
    )
    assert_refused(result, 2, message)
    assert snapshot(populated) == before


def test_download_impossible_without_a_data_dir(cli_env: dict, tmp_path: Path) -> None:
    env = {k: v for k, v in cli_env.items() if k != "SWEEPER_DATA_DIR"}
    env.update(SWEEPER_CACHE_DIR=str(tmp_path / "cache"), KERAS_HOME=str(tmp_path / "keras"))
    result = run_sweeper("worker", str(ROOT / "studies" / "smoke.toml"), env=env, cwd=tmp_path)
    assert_refused(result, 2, r"CIFAR-10 could not be downloaded .*point --data-dir or SWEEPER_DATA_DIR")
    assert not (tmp_path / "sweeper.db").exists()


def test_nan_loss_ends_the_trial_after_one_epoch_and_the_sweep_goes_on(
    pg_url: str, cli_env: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # A learning rate beyond float32's range is inf to the optimizer, so the first step turns the
    # weights into inf/NaN on any machine (a merely huge rate can leave every ReLU dead and the
    # loss huge but finite, depending on the CPU's kernels). Three steps an epoch: the first step's
    # loss is computed before that update, the next ones' after it.
    path = study_file(
        tmp_path, study={"name": "exploding", "budget": 2},
        space={"dropout": {"low": 0.2, "high": 0.5}, "batchnorm": {"choices": [False]}, "learning_rate": {"low": 1e39, "high": 1e40, "log": True}},
        baselines=[], pruner={"type": "none"}, training={"max_train_images": 100, "run_eagerly": True, "epochs": 3},
    )  # fmt: skip
    result = run_sweeper("worker", str(path), "--storage", pg_url, env=cli_env)
    assert result.returncode == 0, result.stderr
    finished = trials(pg_url, "exploding")
    assert [t.state.name for t in finished] == ["PRUNED", "PRUNED"]
    for trial in finished:
        assert re.fullmatch(r"loss became (nan|inf|-inf) at epoch 1", trial.user_attrs["prune_reason"])
        assert len(trial.user_attrs["history"]["loss"]) == 1
    report = sweeper_main(capsys, "report", "exploding", "--storage", pg_url, "-f", "json")
    assert '"nonfinite_loss_trials": 2' in report.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["report", "smoke", "--format", "xml"], r"argument -f/--format: invalid choice: 'xml'"),
        (["worker", "studies/smoke.toml", "--gpu", "cuda"], r"--gpu takes auto, require, none or a GPU index"),
        (["sweep", "studies/smoke.toml", "--workers", "0"], r"--workers: must be at least 1, got 0"),
        (["report", "no-such-study"], r"no study named 'no-such-study' .*\(studies: smoke\)"),
        *[
            (
                ["dashboard", "--refresh-seconds", value],
                rf"--refresh-seconds: must be a finite number of seconds above 0, got '{value}'",
            )
            for value in ("-1", "0", "nan", "inf")
        ],
        (
            ["report", "smoke", "--out", "/nonexistent-folder/report.txt"],
            r"cannot write /nonexistent-folder/report.txt: No such file",
        ),
        (["report", "smoke", "--out", "/tmp"], r"--out /tmp is a folder"),
    ],
    ids=[
        "format",
        "gpu",
        "workers",
        "unknown-study",
        "refresh-negative",
        "refresh-zero",
        "refresh-nan",
        "refresh-inf",
        "report-out-missing",
        "report-out-folder",
    ],
)
def test_cli_mistakes(args: list[str], message: str, populated: str, capsys, monkeypatch) -> None:
    before = snapshot(populated)
    monkeypatch.setenv("SWEEPER_STORAGE", populated)
    monkeypatch.chdir(ROOT)
    assert_refused(sweeper_main(capsys, *args), 2, message)
    assert snapshot(populated) == before


def test_passwords_never_shown(
    password_pg: ThrowawayPostgres, cli_env: dict, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    secret = password_pg.password
    path = study_file(tmp_path, study={"name": "secret", "budget": 1}, training=QUICK_TRAINING)
    worker = run_sweeper("worker", str(path), "--storage", password_pg.url, env=cli_env)
    outputs = [worker.stdout + worker.stderr]
    reads = [  # in this process: what they print is what a subprocess would print
        ("studies", "--storage", password_pg.url),
        ("studies", "--storage", password_pg.url, "-f", "json"),
        ("report", "secret", "--storage", password_pg.url),
        ("report", "secret", "--storage", password_pg.url, "-f", "html", "--out", str(tmp_path / "r.html")),
        ("report", "missing", "--storage", password_pg.url),
    ]
    for args in reads:
        result = sweeper_main(capsys, *args)
        outputs.append(result.stdout + result.stderr)
    assert "postgresql://postgres:***@127.0.0.1" in outputs[1]
    assert all(secret not in out for out in outputs), [o for o in outputs if secret in o]
    assert secret not in (tmp_path / "r.html").read_text()

    # The password can come from a file instead (Docker secrets), and is not shown either.
    password_file = tmp_path / "db-password"
    password_file.write_text(secret + "\n")
    url = password_pg.url.replace(f":{secret}", "")
    monkeypatch.setenv("SWEEPER_STORAGE_PASSWORD_FILE", str(password_file))
    result = sweeper_main(capsys, "studies", "--storage", url)
    assert result.returncode == 0 and "secret" in result.stdout and secret not in result.stdout + result.stderr


_KEYS = st.sampled_from(["study", "space", "training", "sampler", "pruner", "fleet", "baselines", "name", "budget", "low", "high",
                         "log", "choices", "epochs", "batch_size", "type", "seed", "dropout", "batchnorm", "learning_rate", "x"])  # fmt: skip
_SCALARS = st.one_of(
    st.integers(-10, 10**4),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=8),
    st.sampled_from(["tpe", "median", "hyperband", "none"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=5)),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.dictionaries(_KEYS, _VALUES, max_size=7), raw=st.text(max_size=60), use_raw=st.booleans())
def test_loader_returns_a_spec_or_its_own_error(document: dict, raw: str, use_raw: bool) -> None:
    try:
        text = raw if use_raw else tomli_w.dumps(document)
    except (TypeError, ValueError):
        return  # not expressible as TOML
    try:
        spec = studyfile.parse(text)
    except StudyFileError as exc:
        assert str(exc).strip()
        return
    assert isinstance(spec, studyfile.StudySpec)


@settings(max_examples=100, deadline=None)
@given(
    edits=st.dictionaries(
        st.sampled_from(["budget", "epochs", "batch_size", "low", "high"]), st.integers(-3, 3), min_size=1
    )
)
def test_loader_on_near_miss_study_files(edits: dict) -> None:
    text = SMOKE_TEXT
    for key, value in edits.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
    try:
        studyfile.parse(text)
    except StudyFileError:
        pass


@pytest.mark.parametrize(
    "command", [["studies"], ["report", "smoke"], ["report", "smoke", "-f", "json"], ["dashboard", "--port", "18233"]]
)
def test_read_only_commands_never_create_a_database(command: list[str], tmp_path: Path, capsys, monkeypatch) -> None:
    target = tmp_path / "new" / "dir" / "x.db"
    monkeypatch.chdir(tmp_path)
    result = sweeper_main(capsys, *command, "--storage", f"sqlite:///{target}")
    assert_refused(result, 2, re.escape(f"no SQLite database at {target} (nothing was created)"))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("secret", ["variable", "file"])
def test_an_empty_dashboard_secret_refuses_to_start(secret: str, tmp_path: Path, capsys, monkeypatch) -> None:
    empty = tmp_path / "password"
    empty.write_text("\n")
    if secret == "variable":
        monkeypatch.setenv("SWEEPER_DASHBOARD_PASSWORD", "")
    else:
        monkeypatch.setenv("SWEEPER_DASHBOARD_PASSWORD_FILE", str(empty))
    monkeypatch.chdir(tmp_path)
    result = sweeper_main(capsys, "dashboard", "--port", "18231")
    assert_refused(result, 2, r"SWEEPER_DASHBOARD_PASSWORD(_FILE .*)? (is set but empty|holds no password)")


def test_a_dashboard_password_file_that_is_not_utf8_is_bad_input(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "password").write_bytes(b"\xff\xfe-not-text")
    monkeypatch.setenv("SWEEPER_DASHBOARD_PASSWORD_FILE", str(tmp_path / "password"))
    result = sweeper_main(capsys, "dashboard", "--port", "18232", "--storage", f"sqlite:///{tmp_path / 'none.db'}")
    assert_refused(result, 2, r"SWEEPER_DASHBOARD_PASSWORD_FILE .* is not UTF-8 text")


def test_a_dashboard_without_a_password_on_every_interface_says_so(populated: str, cli_env: dict) -> None:
    env = {k: v for k, v in cli_env.items() if not k.startswith("SWEEPER_DASHBOARD_PASSWORD")}
    dashboard = subprocess.Popen(
        sweeper_command("dashboard", "--host", "0.0.0.0", "--port", str(free_port()), "--storage", populated),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    try:
        while not lines or "dashboard for" not in lines[-1]:  # readline: iteration reads ahead of what it returns
            lines.append(dashboard.stdout.readline())
            assert lines[-1] or dashboard.poll() is None, "".join(lines)
        lines.append(dashboard.stdout.readline())
    finally:
        dashboard.send_signal(signal.SIGTERM)
        rest, _ = dashboard.communicate(timeout=60)
    said = "".join(lines) + rest
    assert "dashboard: no password, and 0.0.0.0 is reachable from other machines" in said, said
    assert "set SWEEPER_DASHBOARD_PASSWORD_FILE, or bind --host 127.0.0.1" in said


def test_a_budget_change_through_another_file_is_refused_unless_asked(
    populated: str, cli_env: dict, tmp_path: Path
) -> None:
    path = tmp_path / "smoke.toml"
    path.write_text(SMOKE_TEXT.replace("budget = 6", "budget = 9"))
    before = snapshot(populated)
    result = run_sweeper("worker", str(path), "--storage", populated, env=cli_env)
    assert_refused(result, 2, r"study 'smoke' has a budget of 6 trials; this file says 9")
    assert "--allow-budget-change" in result.stderr
    assert snapshot(populated) == before
    spec = studyfile.parse(path.read_text())
    store = storage.connect(urls.resolve_url(populated))
    try:
        assert open_study(store, spec, allow_budget_change=True).user_attrs["budget"] == 9
    finally:
        store.close()
    with pytest.raises(SweeperError, match="has a budget of 9 trials; this file says 6"):
        _open(populated, studyfile.load(ROOT / "studies" / "smoke.toml"))
    _open(
        populated, studyfile.load(ROOT / "studies" / "smoke.toml"), allow_budget_change=True
    )  # put back for the other tests


@pytest.mark.parametrize(
    "edit, difference",
    [
        (("epochs = 2", "epochs = 3"), "training.epochs: 2 -> 3"),
        (("split_seed = 777", "split_seed = 778"), "training.split_seed: 777 -> 778"),
        (("max_train_images = 300", "max_train_images = 200"), "training.max_train_images: 300 -> 200"),
    ],
    ids=["epochs", "split-seed", "images"],
)
def test_a_second_file_with_the_study_name_and_other_settings_is_refused_unless_asked(
    edit: tuple[str, str], difference: str, populated: str, capsys, tmp_path: Path
) -> None:
    path = tmp_path / "smoke.toml"
    path.write_text(SMOKE_TEXT.replace(*edit))
    before = snapshot(populated)
    result = sweeper_main(capsys, "worker", str(path), "--storage", populated, "--data-dir", str(FIXTURE_DATA))
    assert_refused(result, 2, re.escape(f"study 'smoke' was created with other settings ({difference})"))
    assert "--allow-settings-change" in result.stderr
    assert snapshot(populated) == before
    spec = studyfile.parse(path.read_text())
    _open(populated, spec, allow_settings_change=True)
    with pytest.raises(SweeperError, match=re.escape(difference.split(": ")[0])):
        _open(populated, studyfile.load(ROOT / "studies" / "smoke.toml"))
    _open(
        populated, studyfile.load(ROOT / "studies" / "smoke.toml"), allow_settings_change=True
    )  # put back for the other tests


def _open(url: str, spec: studyfile.StudySpec, **options: bool) -> None:
    store = storage.connect(urls.resolve_url(url))
    try:
        open_study(store, spec, **options)
    finally:
        store.close()


def test_a_password_typed_in_the_url_leaves_the_process_table(pg_url: str, cli_env: dict, tmp_path: Path) -> None:
    url = pg_url.replace(
        "postgres@", "postgres:Typed-pw-9141@"
    )  # the local server trusts 127.0.0.1: any password works
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(sweeper_command("worker", str(ROOT / "studies" / "smoke.toml"), "--storage", url, "--n-trials", "1"),
                              env=cli_env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for(
            lambda: "joined study" in (tmp_path / "worker.log").read_text(), what="the worker to join", timeout=120
        )
        table = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True).stdout
        assert str(worker.pid) in table
        assert "Typed-pw-9141" not in table and "Typed-pw-9141" not in Path(f"/proc/{worker.pid}/cmdline").read_text()
        assert "postgres:***@" in Path(f"/proc/{worker.pid}/cmdline").read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
        log.close()


@pytest.mark.parametrize("userinfo, query", [("postgres:Typed pw 9141@", ""), ("postgres@", "?password=Typed-pw-9141")])
def test_a_password_in_any_form_leaves_the_process_table_with_a_warning(
    userinfo: str, query: str, cli_env: dict, tmp_path: Path
) -> None:
    url = f"postgresql://{userinfo}127.0.0.1:{free_port()}/nowhere{query}"  # nothing listens: it retries
    env = {**cli_env, "SWEEPER_CONNECT_TIMEOUT": "120"}
    process = subprocess.Popen(sweeper_command("studies", "--storage", url), env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: "***" in Path(f"/proc/{process.pid}/cmdline").read_text(), what="the masked title")
        assert "9141" not in Path(f"/proc/{process.pid}/cmdline").read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert "9141" not in stderr
    assert "visible to other users in the process table (ps) while sweeper starts" in stderr
    assert "SWEEPER_STORAGE_PASSWORD_FILE" in stderr


def test_a_query_password_never_shows_in_what_sweeper_prints(pg_url: str, capsys, tmp_path: Path) -> None:
    url = f"{pg_url}?password=Query-pw-5521"  # the local server trusts 127.0.0.1: any password works
    for listing in (
        sweeper_main(capsys, "studies", "--storage", url),
        sweeper_main(capsys, "studies", "-f", "json", "--storage", url),
    ):
        assert listing.returncode == 0, listing.stderr
        assert "Query-pw-5521" not in listing.stdout + listing.stderr and "password=***" in listing.stdout


def _catches_sigterm(pid: int) -> bool:
    """True once the process has its own SIGTERM handler (the kernel's caught-signals mask says so)."""
    return bool(int(proc_status(pid, "SigCgt"), 16) & (1 << (signal.SIGTERM - 1)))


def test_sigterm_at_any_moment_of_a_workers_life_exits_0(cli_env: dict, tmp_path: Path) -> None:
    # Each delay counts from the moment the launcher has installed its SIGTERM handler, its first
    # act; before that the interpreter is still starting and SIGTERM does what it does to any
    # process. Counted from the fork, a loaded machine's slow start would make "a moment" mean
    # "before Python runs".
    delays = (0.0, 0.4, 1.0, 2.3, 3.8, 7.8)
    workers = [
        subprocess.Popen(sweeper_command("worker", str(ROOT / "studies" / "smoke.toml"), "--storage", f"sqlite:///{tmp_path / 'w.db'}"),
                         env=cli_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in delays
    ]  # fmt: skip
    pending, ready = dict(enumerate(delays)), {}
    deadline = time.monotonic() + 120
    while pending:
        now = time.monotonic()
        assert now < deadline, f"workers {sorted(pending)} never installed their SIGTERM handler"
        for i in list(pending):
            if i not in ready and _catches_sigterm(workers[i].pid):
                ready[i] = now
            if i in ready and now >= ready[i] + pending[i]:
                workers[i].send_signal(signal.SIGTERM)
                del pending[i]
        time.sleep(0.01)
    results = [(delay, worker.wait(120), worker.stderr.read()) for worker, delay in zip(workers, delays, strict=False)]
    assert [(delay, code) for delay, code, _ in results] == [(delay, 0) for delay in delays], results
    assert all("Traceback" not in err for _, _, err in results), results


def _foreign_studies(url: str) -> None:
    """Studies written by other Optuna programs: several objectives, a categorical dropout, minimize."""
    storage_ = optuna.storages.RDBStorage(url)
    several = optuna.create_study(storage=storage_, study_name="several", directions=["maximize", "minimize"])
    several.optimize(lambda t: (t.suggest_float("dropout", 0, 1), 1.0), n_trials=2)
    categorical = optuna.create_study(storage=storage_, study_name="categorical", direction="maximize")
    categorical.optimize(lambda t: float(len(t.suggest_categorical("dropout", ["low", "high"]))), n_trials=2)
    minimize = optuna.create_study(storage=storage_, study_name="minimize", direction="minimize")
    minimize.optimize(lambda t: t.suggest_float("dropout", 0, 1), n_trials=3)
    storage_.engine.dispose()


@pytest.mark.parametrize("name", ["several", "categorical", "minimize"])
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_report_refuses_a_study_sweeper_did_not_create(name: str, fmt: str, tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'foreign.db'}"
    _foreign_studies(url)
    assert cli.main(["report", name, "--storage", url, "-f", fmt]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"sweeper: error: study '{name}' was not created by sweeper, so its report would misread it; "
        "'sweeper dashboard' shows any Optuna study"
    ]
