"""The control plane: kopf watches Propylon's resources, recompiles, publishes the snapshot
Secret, runs the proxy Deployment and writes status. The compiler does the translating; this
package only does Kubernetes I/O around it, and never imports the data plane."""

from propylon_operator import (
    admission,
    compiling,
    conditions,
    debouncing,
    documents,
    inventory,
    leases,
    publishing,
    settings,
    statuses,
    workloads,
)

__all__ = [
    "admission",
    "compiling",
    "conditions",
    "debouncing",
    "documents",
    "inventory",
    "leases",
    "publishing",
    "settings",
    "statuses",
    "workloads",
]
