"""Alembic environment of the results database: migrations run on the connection that
:func:`cytowhim.db.connect.migrate` hands over (``config.attributes['connection']``)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
