"""Passwords found by text alone, in every form a storage URL can carry one."""

from __future__ import annotations

import pytest

from sweeper._masking import mask_url_text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://u:pw@db:5432/s", "postgresql://u:***@db:5432/s"),
        ("postgresql://u:p@ss w@rd@db/s", "postgresql://u:***@db/s"),  # an unencoded @ and a space
        ("postgresql://u@db/s?password=pw&sslmode=require", "postgresql://u@db/s?password=***&sslmode=require"),
        ("postgresql://u@db/s?sslmode=require&PASSWORD=pw", "postgresql://u@db/s?sslmode=require&PASSWORD=***"),
        ("--storage=postgresql://u:pw@db/s", "--storage=postgresql://u:***@db/s"),
        ("postgresql://u@db/s", "postgresql://u@db/s"),
        ("sqlite:///./sweeper.db", "sqlite:///./sweeper.db"),
    ],
)
def test_every_password_is_masked_and_nothing_else(text: str, masked: str) -> None:
    assert mask_url_text(text) == masked
