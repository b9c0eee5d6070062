"""sweeper: Optuna sweeps of the tutorial CNN's regularizers on CIFAR-10, run by a fleet of workers.

What a program may use (imported on first use, so `import sweeper` stays instant):

    spec = sweeper.load_study_file("studies/smoke.toml")
    store = sweeper.connect("sqlite:///sweeper.db")
    study = sweeper.open_study(store, spec)
    sweeper.Worker(spec, store, study, data_folder).run()
    sweeper.summary(study, "sqlite:///sweeper.db")["answer"]
    model = sweeper.load_model("smoke")  # the best trial's trained keras.Model (or trial=N)

Everything else is the command line's (`sweeper --help`) and may change.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0.dev0"  # the one place; pyproject.toml reads it
_PUBLIC = {
    "load_study_file": ("sweeper.studyfile", "load"),
    "StudySpec": ("sweeper.studyfile", "StudySpec"),
    "connect": ("sweeper.storage", "connect"),
    "open_study": ("sweeper.fleet", "open_study"),
    "Worker": ("sweeper.fleet.worker", "Worker"),
    "summary": ("sweeper.reporting.summary", "summary"),
    "load_model": ("sweeper.artifacts.export", "load_model"),
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'sweeper' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    return getattr(importlib.import_module(module), attribute)
