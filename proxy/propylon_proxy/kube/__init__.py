"""The data plane's view of a Kubernetes cluster, for ``propylon proxy --config-secret``.

The operator publishes each gateway's compiled snapshot in a Secret; this package watches that
Secret and the EndpointSlices of the Services its routes use, hands each resulting config to the
proxy's atomic swap, and reports the applied version in a Lease per replica. It never compiles
anything (the proxy must not import the compiler) and never touches the request path.

Modules: ``snapshots`` (snapshot bytes -> config), ``slices`` (Services + EndpointSlices ->
endpoints), ``watches`` (list+watch threads), ``leases`` (the status Lease), ``sources``
(ties them together on the event loop), ``clients`` (API client from kubeconfig or in-cluster).
"""

__all__ = ["clients", "leases", "slices", "snapshots", "sources", "watches"]
