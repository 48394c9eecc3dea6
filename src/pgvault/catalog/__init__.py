"""The catalog: SQLAlchemy models, data access and Alembic migrations."""
