"""One module per Azure object a task makes. Each creates idempotently (it reads
first: already there = done), reads, and deletes with "not found" = done; none
decides order (backend.py strings them into steps) and none keeps state."""
