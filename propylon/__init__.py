"""The ``propylon`` command: wires the compiler (control plane) to the proxy (data plane)."""

__version__ = "0.1.0"
__all__ = ["__version__"]
