"""The base of every study-file section: unknown keys, wrong types and non-finite numbers are refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # Every number in a study file is finite: inf and nan are refused wherever a float is taken.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
