"""Data schema of fieldguard: tables, migrations and the services that change them.

Nothing here imports the GraphQL layer, FastAPI or Strawberry.
"""
