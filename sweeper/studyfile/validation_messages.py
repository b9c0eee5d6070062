"""Pydantic's validation errors as one line per problem: `file: [section] key: what is wrong`.

With the nearest valid key for a typo, and union sections (told apart by their `type` key)
named as the user wrote them.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from sweeper.studyfile.space import PARAM_KINDS, TUTORIAL_PARAMS


def describe(exc: ValidationError, source: str, root: type[BaseModel], union_fields: tuple[str, ...] = ()) -> str:
    """One line per problem: `file: [section] key: what is wrong`, with a suggestion for typos."""
    lines = []
    for error in exc.errors(include_url=False):
        raw_loc = _without_param_kind(list(error["loc"]))
        loc = [str(part) for part in raw_loc if not _is_union_tag(part, root, union_fields)]
        where = _format_loc(loc, root)
        if not loc:  # a check across sections: its message names them
            lines.append(f"{source}: {error['msg'].removeprefix('Value error, ')}")
        elif error["type"] == "extra_forbidden":
            lines.append(f"{source}: {where}: unknown key{_nearest_key(raw_loc, root, union_fields)}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {where}: {message}")
    return "\n".join(lines)


def _without_param_kind(loc: list) -> list:
    """`space.width.int.low` → `space.width.low`: the kind of a user's parameter is not a key they wrote."""
    if len(loc) > 2 and loc[0] == "space" and loc[1] not in TUTORIAL_PARAMS and loc[2] in PARAM_KINDS:
        return loc[:2] + loc[3:]
    return loc


def _union_tags(root: type[BaseModel], union_fields: tuple[str, ...]) -> dict[str, type[BaseModel]]:
    """Sections that are unions told apart by `type` (sampler, pruner): map each tag to its model."""
    tags: dict[str, type[BaseModel]] = {}
    for field in union_fields:
        annotated = root.model_fields[field].annotation
        for member in getattr(annotated, "__args__", ()):
            tags[member.model_fields["type"].annotation.__args__[0]] = member
    return tags


def _is_union_tag(part: object, root: type[BaseModel], union_fields: tuple[str, ...]) -> bool:
    return isinstance(part, str) and part in _union_tags(root, union_fields)


def _format_loc(loc: list[str], root: type[BaseModel]) -> str:
    if not loc:
        return "(top level)"
    if len(loc) == 1:
        return f"[{loc[0]}]" if loc[0] in root.model_fields else loc[0]
    return f"[{'.'.join(loc[:-1])}] {loc[-1]}"


def _nearest_key(raw_loc: list[object], root: type[BaseModel], union_fields: tuple[str, ...]) -> str:
    model: type[BaseModel] | None = root
    for part in raw_loc[:-1]:
        if _is_union_tag(part, root, union_fields):
            model = _union_tags(root, union_fields)[str(part)]
        elif model is not None and isinstance(part, str) and part in model.model_fields:
            model = _model_of(model.model_fields[part].annotation)
        elif not isinstance(part, int):
            model = None
    candidates = list(model.model_fields) if model is not None else []
    match = difflib.get_close_matches(str(raw_loc[-1]), candidates, n=1)
    if match:
        return f" (did you mean '{match[0]}'?)"
    return f" (valid keys: {', '.join(candidates)})" if candidates else ""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model inside `Model`, `Model | None` or `list[Model]`, if there is one."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
