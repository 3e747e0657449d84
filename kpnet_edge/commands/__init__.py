"""One module per CLI verb; each exposes `register(subparsers)` and is imported only when used."""
