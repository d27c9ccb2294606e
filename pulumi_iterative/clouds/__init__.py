"""One folder per cloud; the registry of clouds (filled as clouds move in)."""
