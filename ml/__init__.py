"""Training, the model registry and prediction.

Nothing here imports the GraphQL layer, FastAPI or Strawberry.
"""
