"""Authorizers in the data plane: the JWT step (``steps``), its token checks (``jwt``), the
issuers' key sets (``jwks``) and the opening of sealed HS* secrets (``sealing``)."""

from propylon_proxy.authorizers import jwks, jwt, sealing, steps

__all__ = ["jwks", "jwt", "sealing", "steps"]
