"""The sync-prod benchmark: a production-like database copied by tether and by the usual tools, timed."""
