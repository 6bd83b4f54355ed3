"""Which certificate authorities a JWKS or discovery fetch trusts.

The system's store, plus the cluster's CA when the proxy runs in a pod
(``/var/run/secrets/kubernetes.io/serviceaccount/ca.crt``): that is what lets a JWT Authorizer
whose issuer is the cluster's service-account issuer (the API server) fetch
``/.well-known/openid-configuration`` and ``/openid/v1/jwks`` over TLS ("IAM for pods"),
with no Authorizer field. ``PROPYLON_EXTRA_CA_FILE`` names one more PEM bundle, for a proxy
that runs outside a pod (tests, a VM) or an issuer behind a private CA. Built once per process.
"""

from __future__ import annotations

import functools
import os
import pathlib
import ssl

IN_CLUSTER_CA = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
EXTRA_CA_ENV = "PROPYLON_EXTRA_CA_FILE"


@functools.cache
def ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    for bundle in (IN_CLUSTER_CA, pathlib.Path(os.environ.get(EXTRA_CA_ENV, "") or "/nonexistent")):
        if bundle.is_file():
            context.load_verify_locations(cafile=str(bundle))
    return context
