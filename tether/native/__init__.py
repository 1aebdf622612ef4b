"""The native backend: the dev stack's PostgreSQL and Redis as local processes, no Docker needed."""
