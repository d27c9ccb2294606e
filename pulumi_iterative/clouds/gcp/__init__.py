"""cloud="gcp": spot machines in a regional managed instance group, a GCS bucket and a
task-scoped service account (see backend.py)."""
