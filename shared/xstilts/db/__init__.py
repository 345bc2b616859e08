"""The database: models, engine and sessions, Alembic migrations."""
