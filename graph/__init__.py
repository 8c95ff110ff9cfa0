"""The GraphQL service of fieldguard."""
