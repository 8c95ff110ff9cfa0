"""Alembic environment: runs migrations on the URL handed over by `migrate`."""

from alembic import context

from schema.database import create_sync_engine
from schema.tables import Base

config = context.config
url = config.attributes["database_url"]

engine = create_sync_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
