"""Study files (`studies/*.toml`) → a validated `StudySpec`.

A study file is the whole configuration of a sweep: search space, model and data (the
tutorial's CNN on CIFAR-10 unless `[model]` and `[data]` name the user's own functions), training
settings, sampler, pruner, budget, baselines, report axes and worker behaviour. Everything is
checked here, before a worker touches the database, so a typo costs seconds rather than a night
of GPU time.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from optuna.distributions import CategoricalDistribution
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from sweeper.errors import StudyFileError
from sweeper.studyfile._strict import Strict as _Strict
from sweeper.studyfile.search_sections import (
    SEED,
    HyperbandPruner,
    MedianPruner,
    NoPruner,
    RandomSampler,
    SuccessiveHalvingPruner,
    ThresholdPruner,
    TPESampler,
)
from sweeper.studyfile.space import TUTORIAL_PARAMS, FloatParam, Space
from sweeper.studyfile.validation_messages import describe


def check_url(url: str) -> str:
    """`url` if it names a store this can open; a ValueError saying what is expected otherwise."""
    parts = urlsplit(url)
    if url.startswith("file:///") or (parts.scheme == "s3" and parts.netloc):
        return url
    raise ValueError(f"expected file:///absolute/path or s3://bucket/prefix, got {url!r}")


class Training(_Strict):
    epochs: Annotated[int, Field(ge=1, le=100_000)] = 30
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 32
    validation_split: Annotated[float, Field(gt=0, lt=1)] = 0.3
    split_seed: SEED = 777
    max_train_images: Annotated[int, Field(ge=10, le=10**9)] | None = None
    """Use only the first N training images (smoke studies); all of them when absent."""
    jit_compile: bool | Literal["auto"] = "auto"
    """Compile the train step: "auto" is Keras' own choice per backend (XLA for JAX and for
    TensorFlow on a GPU, eager for PyTorch and for TensorFlow on a CPU)."""
    mixed_precision: bool = False
    """float16 compute with float32 weights: for GPUs with tensor cores, slower on CPUs."""
    run_eagerly: bool = False
    """Each step as plain Python, no compiled graph: for debugging a model (print, breakpoints), and
    the quickest for a few dozen images, where building the graph costs more than the steps."""
    steps_per_execution: int | Literal["auto"] = "auto"
    """Batches the tutorial's CNN trains per call into the backend: "auto" is the default measured
    for each backend (`backends.STEPS_PER_EXECUTION`); a `[model]` builder's own `compile` decides for its model."""

    @field_validator("steps_per_execution", mode="before")
    @classmethod
    def _whole_steps_or_auto(cls, value: object) -> object:
        """One message for both forms, not one per member of the union."""
        if value == "auto" or (type(value) is int and 1 <= value <= 10_000):
            return value
        raise ValueError(f'must be "auto" or a whole number from 1 to 10000, not {value!r}')


class Fleet(_Strict):
    """How workers share the study: liveness, retries, stopping and child processes."""

    heartbeat_seconds: Annotated[int, Field(ge=1, le=3600)] = 10
    stale_after_seconds: Annotated[int, Field(ge=2, le=86_400)] = 40
    max_retries: Annotated[int, Field(ge=0, le=1000)] = 2
    stop_grace_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    trials_per_child: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    """Trials one training process runs before it is replaced: 1 isolates every trial."""
    child_growth_mb: Annotated[float, Field(gt=0, le=10**7)] = 1024.0
    """A child whose peak memory grew this much since its first trial is replaced early."""
    poll_seconds: Annotated[float, Field(gt=0, le=3600)] = 2.0

    @model_validator(mode="after")
    def _check_stale(self) -> Fleet:
        # Three missed beats, plus a second for a beat's own slow write, before a trial counts as dead.
        least = 3 * self.heartbeat_seconds + 1
        if self.stale_after_seconds < least:
            raise ValueError(
                f"stale_after_seconds ({self.stale_after_seconds}) must be at least 3 heartbeats plus 1 s "
                f"({least} with heartbeat_seconds = {self.heartbeat_seconds}), or live trials may be reaped"
            )
        return self


class Artifacts(_Strict):
    """Where COMPLETE trials' trained models are kept (Optuna artifacts), and how many of the best."""

    store: str | None = None
    """`file:///path` or `s3://bucket/prefix`; none: `$SWEEPER_ARTIFACTS`, else a folder beside a SQLite study file."""
    keep_top: Annotated[int, Field(ge=1, le=1_000_000)] = 5

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        return value if value is None else check_url(value)


class Confirm(_Strict):
    """Re-run the winners with more training seeds once the search budget is met (0 seeds: off)."""

    seeds: Annotated[int, Field(ge=0, le=100)] = 0
    """Extra runs, each with its own training seed, of every confirmed configuration."""
    top: Annotated[int, Field(ge=0, le=100)] = 0
    """Confirm this many of the overall best too, besides each compared group's best (batch normalization on, off) and the baseline."""


TUTORIAL_GROUPS = "batchnorm"


def groups_parameter(spec: dict[str, Any]) -> str:
    """The parameter whose values are the groups compared and confirmed, from a spec as stored:
    `[compare] by`, else the report's `[report] group_by`, else the tutorial's batch normalization."""
    return (spec.get("compare") or {}).get("by") or (spec.get("report") or {}).get("group_by") or TUTORIAL_GROUPS


class Compare(_Strict):
    """Give every group of one parameter its share of the search (see `sweeper.fleet.comparison`)."""

    by: str
    """A parameter with choices (`batchnorm`): its values are the groups compared."""
    min_trials: Annotated[int, Field(ge=1, le=1_000_000)]
    """Search trials each group gets, whatever the sampler prefers."""


def _check_reference(value: str) -> str:
    module, _, function = value.partition(":")
    if not (module and function and all(part.isidentifier() for part in (*module.split("."), function))):
        raise ValueError(f"{value!r} is not 'module:function' (for example 'my_model:build')")
    return value


class Model(_Strict):
    """The user's Keras model: `build(params, input_shape=..., num_classes=...)` → a compiled model."""

    builder: str
    _reference = field_validator("builder")(_check_reference)


class Data(_Strict):
    """The user's data: `load()` → (x_train, y_train, x_val, y_val), integer class labels."""

    loader: str
    _reference = field_validator("loader")(_check_reference)


class Report(_Strict):
    """What the regularizer chart and table plot: val_acc and the gap against `x`, one series per `group_by`."""

    x: str | None = None
    group_by: str | None = None


def _check_study_name(name: str) -> str:
    if not name.strip():
        raise ValueError("the study name must not be empty")
    if len(name) > 512:
        raise ValueError(f"the study name has {len(name)} characters; at most 512 are allowed")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError("the study name must not contain control characters")
    return name


class StudySection(_Strict):
    name: str
    budget: Annotated[int, Field(ge=1, le=1_000_000)]
    """Trials that must end COMPLETE or PRUNED; failed trials that were retried do not count."""
    description: str = ""

    _name = field_validator("name")(_check_study_name)


class StudySpec(_Strict):
    study: StudySection
    space: Space
    training: Training = Training()
    sampler: Annotated[TPESampler | RandomSampler, Field(discriminator="type")] = TPESampler(type="tpe")
    pruner: Annotated[
        NoPruner | MedianPruner | HyperbandPruner | SuccessiveHalvingPruner | ThresholdPruner,
        Field(discriminator="type"),
    ] = NoPruner(type="none")
    fleet: Fleet = Fleet()
    artifacts: Artifacts = Artifacts()
    confirm: Confirm = Confirm()
    compare: Compare | None = None
    model: Model | None = None
    data: Data | None = None
    report: Report = Report()
    baselines: list[dict[str, bool | int | float | str]] = []
    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _tutorial_model_gets_its_parameters(self) -> StudySpec:
        if self.model is not None:
            return self
        names = list(self.space.params())
        if sorted(names) != sorted(TUTORIAL_PARAMS):
            raise ValueError(
                f"the tutorial's CNN (no [model] section) takes exactly {', '.join(TUTORIAL_PARAMS)}; this space has "
                f"{', '.join(names)}. Name your own Keras model with [model] builder = 'module:function'"
            )
        batchnorm = self.space.batchnorm
        if batchnorm is None or not all(isinstance(choice, bool) for choice in batchnorm.choices):
            raise ValueError("space.batchnorm: the tutorial's CNN takes true or false")
        return self

    @model_validator(mode="after")
    def _baselines_in_space(self) -> StudySpec:
        params = self.space.params()
        for i, baseline in enumerate(self.baselines):
            if set(baseline) != set(params):
                raise ValueError(
                    f"baselines[{i}] must give exactly {', '.join(params)}; it gives {', '.join(baseline)}"
                )
            for name, value in baseline.items():
                if isinstance(params[name], FloatParam) and type(value) is int:
                    baseline[name] = value = float(value)  # TOML writes 1 and 1.0 differently
                if not params[name].contains(value):
                    raise ValueError(f"baselines[{i}].{name} = {value!r} lies outside the search space")
        return self

    @model_validator(mode="after")
    def _report_axes_in_space(self) -> StudySpec:
        for key, wanted in (("x", "a number range"), ("group_by", "choices")):
            name = getattr(self.report, key)
            if name is None:
                continue
            fitting = self._parameters(choices=key == "group_by")
            if name not in fitting:
                raise ValueError(f"report.{key} = {name!r} must name a parameter with {wanted}: {fitting}")
        return self

    def _parameters(self, *, choices: bool) -> list[str]:
        """The space's parameters with choices, or those with a number range."""
        return [n for n, d in self.space.distributions().items() if isinstance(d, CategoricalDistribution) == choices]

    @model_validator(mode="after")
    def _compare_fits(self) -> StudySpec:
        if self.compare is None:
            return self
        dist = self.space.distributions().get(self.compare.by)
        if not isinstance(dist, CategoricalDistribution):
            raise ValueError(
                f"compare.by = {self.compare.by!r} must name a parameter with choices: {self._parameters(choices=True)}"
            )
        needed = len(dist.choices) * self.compare.min_trials
        if needed > self.study.budget:
            raise ValueError(
                f"compare.min_trials = {self.compare.min_trials} for {len(dist.choices)} groups needs "
                f"{needed} trials; the budget is {self.study.budget}"
            )
        return self

    @property
    def name(self) -> str:
        return self.study.name

    @property
    def source(self) -> Path | None:
        """The study file this spec was read from (none when parsed from text)."""
        return self._source

    @property
    def folder(self) -> Path:
        """The study file's folder: where its `[model]` and `[data]` modules are looked up first."""
        return self._source.parent if self._source else Path(".")

    @property
    def groups_by(self) -> str:
        """The parameter whose groups are compared and confirmed (see `groups_parameter`)."""
        return groups_parameter(self.model_dump(include={"compare", "report"}))

    def space_fingerprint(self) -> str:
        """Identifies the search space, so a worker can refuse a study created with another one."""
        canonical = json.dumps(self.space.dump(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load(path: str | Path) -> StudySpec:
    """Read and validate a study file; every problem becomes a `StudyFileError` naming file and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyFileError(f"{path}: no such study file (the examples are in studies/)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyFileError(f"{path}: cannot read the study file: {exc}") from None
    spec = parse(text, source=str(path))
    spec._source = path.resolve()
    return spec


def parse(text: str, source: str = "<study file>") -> StudySpec:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"{source}: not valid TOML: {exc}") from None
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as exc:
        raise StudyFileError(describe(exc, source, StudySpec, union_fields=("sampler", "pruner"))) from None
