"""Wire formats (Command Center's shapes), apart from the ORM models."""
