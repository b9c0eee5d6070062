"""Where studies live: PostgreSQL or a SQLite file, reached through Optuna's RDB storage.

`connect` gives a `Store` (the study lock and the few raw queries the fleet needs, in `_store`);
`urls` masks passwords, `retry` rides out outages, `studies` finds a study sweeper created.
"""

from sweeper.storage._store import Store, abandoned_claim, connect, running_heartbeats

__all__ = ["Store", "abandoned_claim", "connect", "running_heartbeats"]
