"""The retry policy against a real PostgreSQL session killed mid-transaction."""

from __future__ import annotations

import pytest
import sqlalchemy
import sqlalchemy.orm

from sweeper.storage import retry


def test_a_session_whose_connection_was_killed_mid_transaction_is_transient(pg_url: str) -> None:
    """What Optuna's trial query meets when PostgreSQL stops under it and it retries in the same session."""
    engine = sqlalchemy.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    admin = sqlalchemy.create_engine(
        pg_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    session = sqlalchemy.orm.Session(engine)
    try:
        pid = session.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar_one()
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(sqlalchemy.exc.OperationalError) as lost:
            session.execute(sqlalchemy.text("SELECT 1"))
        assert retry.is_transient(lost.value)
        with pytest.raises(sqlalchemy.exc.PendingRollbackError) as pending:
            session.execute(sqlalchemy.text("SELECT 1"))  # the same session, as Optuna's fallback query does
        assert retry.is_transient(pending.value)
    finally:
        session.close()
    with sqlalchemy.orm.Session(engine) as fresh:  # a retry's new session works again
        assert fresh.execute(sqlalchemy.text("SELECT 1")).scalar_one() == 1
    engine.dispose()
    admin.dispose()
