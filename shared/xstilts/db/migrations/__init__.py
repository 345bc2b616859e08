"""Alembic migrations of the xstilts database (run with ``xstilts db upgrade``)."""
