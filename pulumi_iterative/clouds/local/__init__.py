"""cloud="local": machines are processes on this workstation, the bucket a folder."""
