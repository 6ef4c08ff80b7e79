"""The fake external host names the test environment agrees on.

Squid resolves every one of them to 127.0.0.1 from its own ``hosts_file``; nothing else may
resolve them (some are real public names, e.g. ``bigquery.googleapis.com``).
"""

from __future__ import annotations

AUTH_SAAS = "auth.example-saas.test"
API_SAAS = "api.example-saas.test"
BIGQUERY = "bigquery.googleapis.com"
OAUTH2_GOOGLE = "oauth2.googleapis.com"
GOOGLEAPIS = "www.googleapis.com"
SNOWFLAKE = "acme.snowflakecomputing.com"
PG_HOST = "pg.example-db.test"
EXCLUDED_CORP = "excluded.example-corp.test"
BLOCKED = "blocked.example-evil.test"

#: Names on Squid's allowlist (and in its hosts file).
ALLOWED_NAMES: tuple[str, ...] = (
    AUTH_SAAS,
    API_SAAS,
    BIGQUERY,
    OAUTH2_GOOGLE,
    GOOGLEAPIS,
    SNOWFLAKE,
    PG_HOST,
    EXCLUDED_CORP,
)

#: Names Squid can resolve but refuses (403): in the hosts file, not on the allowlist.
BLOCKED_NAMES: tuple[str, ...] = (BLOCKED,)

#: Every fake name: Squid's hosts file and the origin certificate's SANs.
FAKE_NAMES: tuple[str, ...] = ALLOWED_NAMES + BLOCKED_NAMES

#: Loopback names and literals, also on the origin certificate.
LOOPBACK_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
