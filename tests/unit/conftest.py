"""Unit tests run without PostgreSQL: one that asks for it belongs in tests/system."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def pg_server() -> None:
    pytest.fail("a unit test asked for PostgreSQL: it belongs in tests/system/")
