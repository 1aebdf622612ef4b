"""The dev stack: PostgreSQL dev and test databases and a password-protected Redis."""
