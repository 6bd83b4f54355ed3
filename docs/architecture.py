"""Draws docs/architecture.png and docs/architecture.svg: python docs/architecture.py

Kept as code so the picture can change with the design; matplotlib is in the `bench` extra.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.fonttype"] = "none"  # keep text as text: smaller, searchable SVG
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent
PALETTE = {
    "input": "#e8f1fb",
    "caller": "#fff4d6",
    "pure": "#e6f5e6",
    "data": "#f3e8fb",
    "proxy": "#fde8e8",
    "external": "#f2f2f2",
}


def box(ax, x, y, w, h, title, body="", color="external", fontsize=10):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.12",
            facecolor=PALETTE[color],
            edgecolor="#444444",
            linewidth=1.2,
        )
    )
    ax.text(x + w / 2, y + h - 0.22, title, ha="center", va="top", fontsize=fontsize, fontweight="bold")
    if body:
        ax.text(x + w / 2, y + h - 0.55, body, ha="center", va="top", fontsize=fontsize - 1.5, linespacing=1.35)


def arrow(ax, start, end, label="", style="-|>", dashed=False, label_offset=(0, 0.12), rad=0.0):
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle=style,
            mutation_scale=14,
            linewidth=1.3,
            color="#333333",
            linestyle="--" if dashed else "-",
            connectionstyle=f"arc3,rad={rad}",
        )
    )
    if label:
        mx, my = (start[0] + end[0]) / 2 + label_offset[0], (start[1] + end[1]) / 2 + label_offset[1]
        ax.text(mx, my, label, ha="center", va="bottom", fontsize=8.5, style="italic", color="#222222")


def draw() -> plt.Figure:
    fig, ax = plt.subplots(figsize=(15, 8.6))
    ax.set_xlim(0, 15)
    ax.set_ylim(0, 8.6)
    ax.axis("off")

    # Lanes: laptop (top) and cluster (bottom).
    ax.add_patch(
        FancyBboxPatch(
            (0.1, 5.55),
            14.8,
            2.6,
            boxstyle="round,pad=0,rounding_size=0.1",
            facecolor="none",
            edgecolor="#999999",
            linestyle=":",
        )
    )
    ax.text(0.25, 8.02, "on a laptop or in CI: propylon serve (one process)", fontsize=9.5, color="#555555", va="top")
    ax.add_patch(
        FancyBboxPatch(
            (0.1, 0.1),
            14.8,
            5.25,
            boxstyle="round,pad=0,rounding_size=0.1",
            facecolor="none",
            edgecolor="#999999",
            linestyle=":",
        )
    )
    ax.text(
        0.25, 5.22, "in Kubernetes: propylon operator + propylon proxy pods", fontsize=9.5, color="#555555", va="top"
    )

    # Inputs.
    box(
        ax,
        0.3,
        5.8,
        2.9,
        1.9,
        "manifest files",
        "propylon serve -f PATH\nApi, Stage, UsagePlan,\nAuthorizer, Secret,\nService, EndpointSlice",
        "input",
    )
    box(
        ax,
        0.3,
        2.0,
        2.9,
        2.8,
        "Kubernetes API server",
        "CRDs: Api, Stage,\nUsagePlan, Authorizer\n+ labelled Secrets\n(API keys), Services,\nEndpointSlices",
        "input",
    )

    # The two callers of the compiler.
    box(ax, 4.0, 6.1, 2.5, 1.3, "propylon serve", "reads files;\n--watch reloads", "caller")
    box(
        ax,
        4.0,
        2.9,
        2.5,
        1.8,
        "propylon operator",
        "kopf: watches, debounces,\nwrites status conditions,\nEvents, Stage URLs;\nowns the proxy workload",
        "caller",
    )

    # The pure compiler, shared by both lanes.
    box(
        ax,
        7.2,
        4.3,
        2.6,
        1.9,
        "compiler",
        "compile(documents)\n-> snapshot + diagnostics\npure: no I/O, no clock\noperator/propylon_compiler",
        "pure",
    )

    # The snapshot as the operator publishes it.
    box(
        ax,
        7.2,
        1.6,
        2.6,
        1.5,
        "snapshot Secret",
        "<gateway>-snapshot\ncanonical JSON of the\nGatewayConfig + version",
        "data",
    )

    # The proxy (data plane), in process or as pods, each with its three listeners.
    box(
        ax,
        10.7,
        5.8,
        2.9,
        1.9,
        "proxy (in process)",
        "aiohttp data plane\nproxy/propylon_proxy\nswaps whole plans\natomically",
        "proxy",
    )
    box(
        ax,
        10.7,
        0.95,
        2.9,
        3.25,
        "proxy pods",
        "propylon proxy\n--config-secret NS/NAME\nwatches the Secret and\n"
        "EndpointSlices; keeps the\nlast config if the API\nserver is away",
        "proxy",
    )
    for top in (7.55, 4.05):
        for i, label in enumerate(("public :8080", "internal :8081", "admin :9090")):
            y = top - i * 0.55
            ax.add_patch(
                FancyBboxPatch(
                    (13.7, y - 0.2),
                    1.1,
                    0.4,
                    boxstyle="round,pad=0.01,rounding_size=0.06",
                    facecolor="white",
                    edgecolor="#aa4444",
                )
            )
            ax.text(14.25, y, label, ha="center", va="center", fontsize=7.8)

    # Flows, laptop lane.
    arrow(ax, (3.2, 6.75), (4.0, 6.75), "load")
    arrow(ax, (6.5, 6.4), (7.6, 6.2), "documents", label_offset=(-0.15, 0.05))
    arrow(ax, (9.5, 6.2), (10.7, 6.5), "snapshot", label_offset=(0.0, 0.05))

    # Flows, cluster lane.
    arrow(ax, (3.2, 4.3), (4.0, 4.3), "watch")
    arrow(ax, (4.0, 3.2), (3.2, 3.2), "status,\nEvents", label_offset=(0.0, -0.55))
    arrow(ax, (6.5, 4.55), (7.2, 5.0), "documents", label_offset=(-0.45, 0.1))
    arrow(ax, (7.2, 4.5), (6.5, 4.15), "snapshot", label_offset=(0.55, -0.42))
    arrow(ax, (6.0, 2.9), (7.2, 2.35), "write if the\nversion changed", label_offset=(-0.75, -0.6))
    arrow(ax, (9.8, 2.35), (10.7, 2.35), "watch")
    arrow(ax, (6.5, 3.6), (10.7, 3.6), "owns: Deployment, Services, PDB, HPA", dashed=True, label_offset=(0.0, 0.05))
    ax.plot([1.75, 1.75, 10.6], [2.0, 1.2, 1.2], linestyle="--", color="#333333", linewidth=1.3)
    arrow(ax, (10.5, 1.2), (10.7, 1.2))
    ax.text(6.2, 1.25, "EndpointSlices of target Services", ha="center", va="bottom", fontsize=8.5, style="italic")

    # Legend for the colours.
    items = [
        ("input", "inputs"),
        ("caller", "control plane"),
        ("pure", "pure translation"),
        ("data", "snapshot"),
        ("proxy", "data plane"),
    ]
    for i, (color, label) in enumerate(items):
        ax.add_patch(
            FancyBboxPatch(
                (0.4 + i * 1.9, 0.35), 0.3, 0.25, boxstyle="square,pad=0", facecolor=PALETTE[color], edgecolor="#444444"
            )
        )
        ax.text(0.8 + i * 1.9, 0.47, label, va="center", fontsize=8.5)
    ax.text(
        14.75,
        0.47,
        "clients -> public; PRIVATE stages, @connections -> internal; /healthz /metrics /admin -> admin",
        ha="right",
        va="center",
        fontsize=8,
        color="#555555",
    )
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    figure = draw()
    figure.savefig(HERE / "architecture.png", dpi=110)
    figure.savefig(HERE / "architecture.svg")
