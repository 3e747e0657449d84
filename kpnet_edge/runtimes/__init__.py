"""Runtime adapters: one per backend, same small interface, all feeding the numpy post-processor."""
