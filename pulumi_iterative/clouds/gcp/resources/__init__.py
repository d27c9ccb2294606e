"""The GCP objects a task makes, one module each, small and uniform: found by its
derived name, created idempotently (already there = done), deleted with "not found"
= done. backend.py strings them into steps; nothing here decides order.

Every function takes the project (and region where it matters) and the task's
`Names`; clients are made per call (api.py), nothing is kept between calls.
"""
