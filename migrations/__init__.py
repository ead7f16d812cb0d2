"""Alembic environment and revisions for our SQL tables; shipped inside the package as seedcore._migrations."""
