"""Pay-by-bank checkout backend."""
