"""The prod stack: a hardened Cloud SQL for PostgreSQL instance and what surrounds it."""
