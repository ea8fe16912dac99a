"""The schema's versions as Alembic migrations (``versions/``), run by :mod:`..schema`."""
