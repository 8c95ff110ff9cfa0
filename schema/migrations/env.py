"""Alembic environment: runs migrations on the URL handed over by `migrate`."""

from alembic import context

from schema.database import create_sync_engine
from schema.tables import Base

config = context.config
url = config.attributes["database_url"]

engine = create_sync_engine(url)
with engine.connect() as connection:
    if connection.dialect.name == "sqlite":
        # Recreating a table drops the old one; with foreign keys enforced,
        # that would cascade and delete the rows that refer to it.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
