"""Settlement: the vectorised engine, the hash-chained ledger, and the settle run."""
