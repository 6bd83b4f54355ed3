"""The compiler: manifests in, one immutable snapshot (plus diagnostics) out. Pure: no I/O
outside ``manifests``, no clock, no randomness, and no kopf, aiohttp or kubernetes imports."""
