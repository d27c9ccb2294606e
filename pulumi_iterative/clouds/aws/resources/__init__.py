"""The AWS objects a task makes, one module each, small and uniform: found by its
derived name (or tag), created idempotently (already there = done), deleted with
"not found" = done. backend.py strings them into steps; nothing here decides order.

Every function takes an `Aws` (clients for one region, made per operation) and the
task's `Names`; none keeps state between calls.
"""
