"""The study file's `[space.NAME]` sections: which parameters a trial draws, and from what.

A parameter is a float range (`low`, `high`, optional `log`), an integer range (`type = "int"`,
optional `step`, `log`) or a list of `choices` (strings, numbers or booleans). The tutorial's
three (`dropout`, `batchnorm`, `learning_rate`) are declared fields, so their own checks name
them; any other name is a parameter of the user's `[model]` builder.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import optuna
from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from sweeper.studyfile._strict import Strict

TUTORIAL_PARAMS = ("dropout", "batchnorm", "learning_rate")
"""What the tutorial's CNN takes (a study without `[model]`)."""


def _finite_float(value: Any) -> Any:
    # TOML writes 1 and 1.0 differently; both mean the same bound.
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class FloatParam(Strict):
    type: Literal["float"] | None = Field(default=None, exclude=True)
    """Optional: a range is a float range unless it says `type = "int"`."""
    low: float
    high: float
    log: bool = False

    _floats = field_validator("low", "high", mode="before")(_finite_float)

    @model_validator(mode="after")
    def _check_range(self) -> FloatParam:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got {self.low}")
        return self

    def distribution(self) -> optuna.distributions.FloatDistribution:
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        return isinstance(value, float | int) and not isinstance(value, bool) and self.low <= value <= self.high


class IntParam(Strict):
    type: Literal["int"]
    low: int
    high: int
    step: Annotated[int, Field(ge=1)] = 1
    log: bool = False

    @model_validator(mode="after")
    def _check_range(self) -> IntParam:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("log scale needs low >= 1 and step = 1")
        return self

    def distribution(self) -> optuna.distributions.IntDistribution:
        return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high
            and (value - self.low) % self.step == 0
        )  # fmt: skip


class Choices(Strict):
    choices: Annotated[list[bool | int | float | str], Field(min_length=1)]

    @field_validator("choices")
    @classmethod
    def _unique(cls, value: list) -> list:
        if len({(type(v), v) for v in value}) != len(value):
            raise ValueError("choices must not repeat")
        return value

    def distribution(self) -> optuna.distributions.CategoricalDistribution:
        return optuna.distributions.CategoricalDistribution(self.choices)

    def contains(self, value: Any) -> bool:
        return any(type(choice) is type(value) and choice == value for choice in self.choices)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "choices" if "choices" in value else "int" if value.get("type") == "int" else "float"
    return "float"


Param = Annotated[
    Annotated[FloatParam, Tag("float")] | Annotated[IntParam, Tag("int")] | Annotated[Choices, Tag("choices")],
    Discriminator(_kind),
]
PARAM_KINDS = ("float", "int", "choices")
"""The tags a validation error's location carries for a parameter of the user's own model."""


class Space(Strict):
    """The parameters a trial draws; fix one by giving it a single value."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Param] = Field(init=False)

    dropout: FloatParam | None = None
    batchnorm: Choices | None = None
    learning_rate: FloatParam | None = None

    @field_validator("dropout")
    @classmethod
    def _dropout_is_a_rate(cls, value: FloatParam | None) -> FloatParam | None:
        if value is not None and not (0 <= value.low and value.high < 1):
            raise ValueError(f"must lie in [0, 1), got {value.low}..{value.high}")
        return value

    @field_validator("learning_rate")
    @classmethod
    def _learning_rate_is_positive(cls, value: FloatParam | None) -> FloatParam | None:
        if value is not None and value.low <= 0:
            raise ValueError(f"must be > 0, got low = {value.low}")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Space:
        if not self.params():
            raise ValueError("the search space has no parameters")
        return self

    def params(self) -> dict[str, FloatParam | IntParam | Choices]:
        """Every parameter by name: the tutorial's first, then the others in file order."""
        declared = {name: getattr(self, name) for name in TUTORIAL_PARAMS if getattr(self, name) is not None}
        return {**declared, **(self.__pydantic_extra__ or {})}

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        return {name: param.distribution() for name, param in self.params().items()}

    def dump(self) -> dict[str, Any]:
        """The space as plain data: what the study stores and its fingerprint hashes."""
        return {name: param.model_dump(mode="json") for name, param in self.params().items()}
