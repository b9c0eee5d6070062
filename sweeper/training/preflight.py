"""The study's `[model]` builder and `[data]` loader, run once in a check process before any trial.

A typo in the user's code must cost one line at start-up, not a failed trial per worker: the
check loads the data, builds the model once and evaluates a few rows, on the CPU, in a process of
its own (`python -m sweeper.training.preflight`), so a crash in the user's code cannot take the worker with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from sweeper import studyfile
from sweeper.errors import StudyFileError
from sweeper.training.backends import child_env
from sweeper.training.prepared import USER_DATA_PREFIX, open_prepared, save_arrays
from sweeper.training.user_code import ARRAYS, UserCodeError, check_model, load, one_line

PREFLIGHT_RESULT = "preflight.json"


def preflight(study_file: Path, prepared: Path | None, cache_dir: Path, backend: str) -> Path:
    """Run the study's loader and/or a first build in a check process; the folder its trials will map.

    `prepared` is the tutorial data's folder when the study has no `[data]` loader. The check runs
    on the CPU with the worker's Keras backend, before any GPU is claimed.
    """

    cache_dir.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix=USER_DATA_PREFIX, dir=cache_dir)) if prepared is None else prepared
    result_dir = Path(tempfile.mkdtemp(prefix="preflight-", dir=cache_dir))
    env = {**os.environ, **child_env(backend, None, 1), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "sweeper.training.preflight", str(study_file), str(target), str(result_dir)]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # nosec B603 # our own interpreter and module
    try:
        result = json.loads((result_dir / PREFLIGHT_RESULT).read_text())
    except (OSError, ValueError):
        tail = (finished.stderr.strip().splitlines() or ["no output"])[-1]
        result = {"error": f"the check of [model]/[data] exited {finished.returncode}: {tail}"}
    finally:
        _remove(result_dir)
    if result.get("error"):
        if prepared is None:
            _remove(target)
        raise StudyFileError(f"{study_file}: {result['error']}")
    return target


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _check(study_file: Path, target: Path) -> None:
    spec = studyfile.load(study_file)
    if spec.data is not None:
        arrays = load(spec.data.loader, spec.folder, spec.training.max_train_images)
        save_arrays(target, arrays)
    else:
        dataset = open_prepared(target)
        arrays = {name: getattr(dataset, name) for name in ARRAYS}
    if spec.model is not None:
        params = spec.baselines[0] if spec.baselines else {n: _middle(d) for n, d in spec.space.distributions().items()}
        check_model(spec.model.builder, spec.folder, params, arrays)


def _middle(dist: Any) -> Any:
    """A valid value of a parameter for the check build: the first choice, or the range's low end."""
    return dist.choices[0] if hasattr(dist, "choices") else dist.low


def main(argv: list[str]) -> int:
    study_file, target, result_dir = (Path(arg) for arg in argv)
    try:
        _check(study_file, target)
        error = ""
    except (UserCodeError, StudyFileError) as exc:
        error = str(exc)
    except Exception as exc:  # a failure of the check itself, still one line
        error = f"checking [model]/[data] failed: {one_line(exc)}"
    (result_dir / PREFLIGHT_RESULT).write_text(json.dumps({"error": error}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
