"""A test service for worker pools: counts items into SQLite, idempotently, with some work."""
