"""Workers sharing one study: the worker loop, claims, heartbeats, a trial's run and its results.

A `worker` claims trials of the shared study (`_shared_study`: open it, claim under the study
lock), keeps them alive (`heartbeat`), reaps the dead's (`reaping`), runs each (`trial_runner`)
and records what it learns (`recording`); `search`, `comparison` and `confirmation` decide what
to try next.
"""

from sweeper.fleet._shared_study import (
    Claim,
    ClaimStatus,
    Progress,
    SpaceChangedError,
    claim,
    open_study,
    progress,
    start,
)
from sweeper.fleet.reaping import Reaper

__all__ = [
    "Claim",
    "ClaimStatus",
    "Progress",
    "Reaper",
    "SpaceChangedError",
    "claim",
    "open_study",
    "progress",
    "start",
]
