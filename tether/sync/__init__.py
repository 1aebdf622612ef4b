"""Copying production into the local database: a fast, consistent, anonymized, atomic and incremental sync."""
