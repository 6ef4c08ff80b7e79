"""Alembic's environment for the console store, configured in code by ``Store.migrate``.

``Store.migrate`` passes an open connection, already inside a transaction holding the
migration lock, in ``config.attributes["connection"]``; the migrations run on it and commit
with it. Importing this module outside Alembic (doctest collection, packaging) does nothing.
"""

from __future__ import annotations

from alembic import context

from egress.console.store.models import Base

VERSION_TABLE = "egress_console_alembic_version"
"""Alembic's own table, named so that it cannot collide with another app's in a shared database."""


def run_migrations() -> None:
    """Upgrade on the connection ``Store.migrate`` handed over (online mode only)."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run the console store's migrations with Store.migrate()")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if getattr(context, "_proxy", None) is not None:  # only when Alembic runs this file
    run_migrations()
