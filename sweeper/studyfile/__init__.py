"""The study file: a sweep's whole configuration, read and checked before anything runs.

The schema (`_schema`) with its search space (`space`) and sampler and pruner sections
(`search_sections`); a mistake is one line naming the key (`validation_messages`).
"""

from sweeper.studyfile._schema import (
    Artifacts,
    Compare,
    Confirm,
    StudySpec,
    Training,
    check_url,
    groups_parameter,
    load,
    parse,
)

__all__ = ["Artifacts", "Compare", "Confirm", "StudySpec", "Training", "check_url", "groups_parameter", "load", "parse"]
