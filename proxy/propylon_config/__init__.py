"""The snapshot model shared by the compiler (which writes it) and the proxy (which serves it).

Standard library only: the data plane owns this schema and must not pull in the control plane.
"""

from propylon_config import codec, gateway_responses, key_hashing, model

__all__ = ["codec", "gateway_responses", "key_hashing", "model"]
