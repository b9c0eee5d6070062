"""`sweeper` command line: argument parsing, output formats and exit codes only.

Exit codes: 0 success, 1 runtime failure (storage unreachable, trials failing), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import NoReturn

import optuna

from sweeper import __version__, storage, studyfile
from sweeper.cli._argtypes import gpu_choice, port, positive_int, positive_seconds
from sweeper.errors import SweeperError
from sweeper.fleet import events
from sweeper.reporting.study_list import studies_table, summaries
from sweeper.storage import retry, urls
from sweeper.storage.studies import load_study
from sweeper.training import backends, data

log = logging.getLogger("sweeper")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own exit code 2, without the usage dump
        self.exit(2, f"sweeper: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sweeper", description="Hyperparameter sweeps of the tutorial CNN on CIFAR-10.")
    parser.add_argument("--version", action="version", version=f"sweeper {__version__}")
    parser.add_argument("--debug", action="store_true", help="verbose logs and full tracebacks")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also show the Keras backend's start-up messages from training"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def storage_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--storage", help="storage URL (default: $SWEEPER_STORAGE, else sqlite:///sweeper.db)")

    def data_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="CIFAR-10 directory or tarball (default: $SWEEPER_DATA_DIR, else download)")

    def study_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--allow-space-change", action="store_true", help="continue a study whose search space was edited"
        )
        p.add_argument("--allow-budget-change", action="store_true", help="give a running study the file's new budget")
        p.add_argument(
            "--allow-settings-change",
            action="store_true",
            help="continue a study whose [training], [data], [model], [fleet], [confirm] or [compare] was edited",
        )

    def gpu_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--backend", help="Keras backend: tensorflow, jax or torch (default: $KERAS_BACKEND, else tensorflow)"
        )
        p.add_argument(
            "--gpu", type=gpu_choice, default="auto",
            help="auto (claim a free GPU, else the CPU), require (a GPU or exit 2), none, or a GPU index",
        )  # fmt: skip
        p.add_argument("--workers-per-gpu", type=positive_int, default=1, help="pack K workers on each GPU")
        p.add_argument(
            "--gpu-fallback", choices=("wait", "cpu"), default="wait", help="with --gpu auto and no free GPU"
        )

    def epoch_lines_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-epoch-lines", action="store_true", help="log trials' starts and ends, not every epoch")

    worker = commands.add_parser("worker", help="run trials of a study until its budget is met")
    worker.add_argument("study_file")
    storage_option(worker)
    data_option(worker)
    worker.add_argument("--n-trials", type=positive_int, help="stop after this many trials from this worker")
    worker.add_argument("--events", choices=("json",), help="also write progress events to stdout (for `sweep`)")
    study_options(worker)
    gpu_options(worker)
    epoch_lines_option(worker)
    worker.set_defaults(func=cmd_worker)

    sweep = commands.add_parser("sweep", help="run N local workers on one study and wait for them")
    sweep.add_argument("study_file")
    sweep.add_argument("--workers", type=positive_int, default=2)
    storage_option(sweep)
    data_option(sweep)
    study_options(sweep)
    gpu_options(sweep)
    epoch_lines_option(sweep)
    sweep.add_argument("--no-live", action="store_true", help="plain log lines even on a terminal")
    sweep.set_defaults(func=cmd_sweep)

    studies = commands.add_parser("studies", help="list the studies in a storage")
    storage_option(studies)
    studies.add_argument("-f", "--format", choices=("table", "json"), default="table")
    studies.set_defaults(func=cmd_studies)

    report = commands.add_parser("report", help="which regularizer won: a study's summary and figures")
    report.add_argument("study_name")
    storage_option(report)
    report.add_argument("-f", "--format", choices=("table", "json", "csv", "html"), default="table")
    report.add_argument("--out", help="write to this file instead of standard output")
    report.set_defaults(func=cmd_report)

    export = commands.add_parser("export", help="write a trial's kept model to a .keras file and check it")
    export.add_argument("study_name")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--best", action="store_true", help="the best trial with a kept model")
    which.add_argument("--trial", type=int, help="this trial number")
    export.add_argument("--out", required=True, help="the .keras file to write")
    storage_option(export)
    data_option(export)
    export.add_argument("--no-evaluate", action="store_true", help="copy only; skip re-evaluating val_acc")
    export.set_defaults(func=cmd_export)

    dashboard = commands.add_parser("dashboard", help="optuna-dashboard with live regularizer charts")
    storage_option(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    dashboard.add_argument("--port", type=port, default=8080)
    dashboard.add_argument("--allow-writes", action="store_true", help="let visitors change and delete studies")
    dashboard.add_argument(
        "--refresh-seconds", type=positive_seconds, default=5.0, help="how often the live charts are checked"
    )
    dashboard.set_defaults(func=cmd_dashboard)
    return parser


def _gpu_args(args: argparse.Namespace, backend: str) -> list[str]:
    return [
        "--backend", backend, "--gpu", args.gpu,
        "--workers-per-gpu", str(args.workers_per_gpu), "--gpu-fallback", args.gpu_fallback,
    ]  # fmt: skip


def cmd_worker(args: argparse.Namespace) -> int:
    from sweeper.artifacts import kept_models, model_stores
    from sweeper.fleet import open_study
    from sweeper.fleet.worker import Worker, install_signal_handlers
    from sweeper.training import gpus

    spec = studyfile.load(args.study_file)
    backend = backends.resolve(args.backend)
    url = urls.resolve_url(args.storage)
    backends.require_installed(backend)
    backends.steps_per_execution(spec.training.steps_per_execution, backend)  # refused now, not by every trial
    models_url = kept_models.store_url(spec.artifacts, url)
    model_store = None
    if models_url:
        model_store = model_stores.open_store(models_url)  # checked now, not after a trial has trained
        kept_models.check_room(models_url, url, spec.artifacts.keep_top)
    stop = threading.Event()
    install_signal_handlers(lambda _reason: stop.set())  # until a trial can be running
    folder, own = data.worker_folder(spec, data.resolve_data_dir(args.data_dir), backend)
    gpu = gpus.claim(args.gpu, per_gpu=args.workers_per_gpu, fallback=args.gpu_fallback, stop=stop)
    fleet = spec.fleet
    store = storage.connect(
        url,
        heartbeat_seconds=fleet.heartbeat_seconds,
        stale_after_seconds=fleet.stale_after_seconds,
        max_retries=fleet.max_retries,
        stop=stop,
    )
    try:
        study = retry.retrying(
            lambda: open_study(
                store,
                spec,
                allow_space_change=args.allow_space_change,
                allow_budget_change=args.allow_budget_change,
                allow_settings_change=args.allow_settings_change,
            ),
            "opening the study",
            url=url,
        )
        worker = Worker(
            spec, store, study, folder, n_trials=args.n_trials, gpu=gpu, backend=backend, stop=stop,
            on_event=events.JsonLines() if args.events == "json" else lambda _event: None,
            epoch_lines=not args.no_epoch_lines, verbose=args.verbose or args.debug,
            keeper=kept_models.ModelKeeper(model_store, spec.artifacts.keep_top, lambda: store.lock(spec.name, "trimming kept models"))
            if model_store else None,
        )  # fmt: skip
        install_signal_handlers(worker.request_stop)
        if model_store is None:
            log.info("%s: %s", worker.name, kept_models.NOT_KEPT)
        log.info("%s: joined study %s on %s (%s, GPU %s)", worker.name, spec.name, urls.mask(url), backend, gpu.label)
        return worker.run()
    finally:
        gpu.release()
        store.close()
        if own:
            data.discard(folder)


def cmd_sweep(args: argparse.Namespace) -> int:
    from sweeper.artifacts import kept_models, model_stores
    from sweeper.cli.sweep import run_workers

    spec = studyfile.load(args.study_file)
    backend = backends.resolve(args.backend)
    url = urls.resolve_url(args.storage)
    backends.require_installed(backend)
    backends.steps_per_execution(spec.training.steps_per_execution, backend)  # refused now, not by every trial
    models_url = kept_models.store_url(spec.artifacts, url)
    if models_url:
        model_stores.open_store(models_url)  # one clear error, not one per worker
    # once, before the workers race for it; a user's loader and builder are checked here, not in each worker
    folder = data.prepare_for(spec, spec.source, data.resolve_data_dir(args.data_dir), backend)
    flags = [flag for flag, on in (("--debug", args.debug), ("--verbose", args.verbose)) if on]
    worker_args = [*flags, "worker", args.study_file]
    worker_args += ["--data-dir", args.data_dir] if args.data_dir else []
    worker_args += _gpu_args(args, backend)
    worker_args += [flag for flag, on in (("--allow-space-change", args.allow_space_change),
                                          ("--allow-settings-change", args.allow_settings_change),
                                          ("--allow-budget-change", args.allow_budget_change),
                                          ("--no-epoch-lines", args.no_epoch_lines)) if on]  # fmt: skip
    live = not args.no_live and sys.stderr.isatty()
    try:
        code = run_workers(
            args.workers, worker_args, url, live=spec if live else None, env={data.SHARED_FOLDER_ENV: str(folder)}
        )
    finally:
        data.discard(folder)
    store = storage.connect(url)
    try:
        rows = [row for row in summaries(store) if row["study"] == spec.name]
    finally:
        store.close()
    print(studies_table(rows))
    return code


def cmd_studies(args: argparse.Namespace) -> int:
    store = storage.connect(urls.resolve_url(args.storage), create=False)
    try:
        rows = summaries(store)
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps({"storage": urls.mask(store.url), "studies": rows}, indent=2))
    elif rows:
        print(f"storage: {urls.mask(store.url)}")
        print(studies_table(rows))
    else:
        print(f"storage: {urls.mask(store.url)}\nno studies yet: start one with 'sweeper worker studies/smoke.toml'")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from sweeper.reporting import report

    store = storage.connect(urls.resolve_url(args.storage), create=False)
    try:
        output = report.render(load_study(store, args.study_name), store, args.format)
    finally:
        store.close()
    if args.out:
        from pathlib import Path

        from sweeper.outfiles import writing

        with writing(Path(args.out)) as out:
            out.write_text(output, encoding="utf-8")
        log.info("report written to %s", args.out)
    else:
        print(output)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sweeper.artifacts.export import export

    url = urls.resolve_url(args.storage)
    line = export(
        url, args.study_name, args.trial, Path(args.out),
        evaluate=not args.no_evaluate, data_dir=args.data_dir, verbose=args.verbose or args.debug,
    )  # fmt: skip
    print(line)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from sweeper.reporting import dashboard

    return dashboard.serve(
        urls.resolve_url(args.storage),
        host=args.host,
        port=args.port,
        allow_writes=args.allow_writes,
        refresh_seconds=args.refresh_seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("optuna", "sqlalchemy", "absl", "botocore", "boto3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.INFO if args.debug else logging.WARNING)
    if not args.debug:  # heartbeats and retries are marked experimental; users need not hear it
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        return args.func(args)
    except SweeperError as exc:
        print(f"sweeper: error: {urls.redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"sweeper: internal error: {type(exc).__name__}: {urls.redact(str(exc)).splitlines()[0] if str(exc) else ''}"
            " (run with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
