"""Parameters in words, for the report's answer, tables and chart labels.

The tutorial's three read as the tutorial says them ("batch normalization on, dropout 0.28,
learning rate 0.0015"); any other parameter of a user's model as `name value`.
"""

from __future__ import annotations

from typing import Any


def describe(name: str, value: Any) -> str:
    """One parameter in words: the tutorial's three as the tutorial says them, others as `name value`."""
    if name == "batchnorm":
        return f"batch normalization {on_off(value)}"
    if name == "dropout":
        return f"dropout {format_number(value, '.2f')}"
    if name == "learning_rate":
        return f"learning rate {format_number(value, '.2g')}"
    return f"{name} {format_number(value, '.3g') if isinstance(value, float) else value}"


def describe_params(params: dict[str, Any], first: str | None = None) -> str:
    """Parameters in words, the `first` (the compared group) leading."""
    names = sorted(params, key=lambda name: name != first)
    return ", ".join(describe(name, params[name]) for name in names)


def format_number(value: float | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def on_off(flag: bool | None) -> str:
    return "?" if flag is None else ("on" if flag else "off")
