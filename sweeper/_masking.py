"""Passwords in storage URLs found by text alone: the one rule the process title, logs and errors share.

Text, not a URL parser, because it runs in the launcher's first instant (before SQLAlchemy is
imported) and because it must also hide what a parser gets wrong: a password holding a space or an
unencoded `@`, or given as libpq's `?password=` query parameter.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(://[^:/@\s]*:).*@")  # greedy: up to the URL's last `@`
_QUERY = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)


def mask_url_text(url: str) -> str:
    """One URL (or one command-line argument holding one) with every password replaced by ***."""
    return _QUERY.sub(r"\1***", _USERINFO.sub(r"\1***@", url))
