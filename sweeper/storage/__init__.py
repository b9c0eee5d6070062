"""Where studies live: PostgreSQL or a SQLite file, reached through Optuna's RDB storage.

`connect` gives a `Store` (the study lock, in `_store`); `records` says what a study stores;
`optuna_internals` holds the few reads past Optuna's public API (the fleet's raw queries among
them); `urls` masks passwords, `retry` rides out outages, `studies` finds a study sweeper created.
"""

from sweeper.storage._store import Store, connect

__all__ = ["Store", "connect"]
