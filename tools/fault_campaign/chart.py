"""The report's chart: the classes of every cell as stacked bars (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tools.fault_campaign.campaign import CampaignResult
from tools.fault_campaign.outcomes import TARGET_TITLES, Outcome, Target

COLOURS = {
    Outcome.MASKED: "#9e9e9e",
    Outcome.CORRECTED: "#43a047",
    Outcome.UNCORRECTABLE: "#fb8c00",
    Outcome.SDC: "#e53935",
}


ABFT_DETECTED_COLOUR = "#1e88e5"


def _bars(axis: Any, labels: list[str], parts: list[tuple[str, str, list[float]]]) -> None:
    """Horizontal bars of `labels`, stacked from (legend label, colour, shares) parts."""
    left = np.zeros(len(labels))
    for label, colour, shares in parts:
        axis.barh(labels, shares, left=left, color=colour, label=label)
        left += np.array(shares)
    axis.set_xlim(0, 1)
    axis.invert_yaxis()
    axis.tick_params(labelsize=7)


def draw_chart(result: CampaignResult, path: Path) -> None:
    """Stacked bars of the four classes per cell, one panel per target, and ABFT's masked,
    detected and SDC shares in a panel of their own (PNG, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = [t for t in Target if result.of(t)]
    abft_rows = list(result.abft.rows) if result.abft is not None else []
    rows = [len(result.of(t)) for t in targets] + ([len(abft_rows)] if abft_rows else [])
    if not rows:
        raise ValueError("no cells to draw")
    figure, axes = plt.subplots(
        len(rows),
        1,
        figsize=(9, 1.2 + 0.24 * sum(rows) + 0.5 * len(rows)),
        gridspec_kw={"height_ratios": [r + 1.5 for r in rows]},
        squeeze=False,
    )
    for axis, target in zip(axes[:, 0], targets, strict=False):
        cells = result.of(target)
        parts = [(o.value, COLOURS[o], [c.counts[o] / c.trials for c in cells]) for o in Outcome]
        _bars(axis, [f"{c.fault.name} / {c.protection}" for c in cells], parts)
        axis.set_title(TARGET_TITLES[target], fontsize=10, loc="left")
    if abft_rows:
        axis = axes[-1, 0]
        parts = [
            (
                Outcome.MASKED.value,
                COLOURS[Outcome.MASKED],
                [r.masked / r.trials for r in abft_rows],
            ),
            ("ABFT detected", ABFT_DETECTED_COLOUR, [r.detected / r.trials for r in abft_rows]),
            (Outcome.SDC.value, COLOURS[Outcome.SDC], [r.sdc / r.trials for r in abft_rows]),
        ]
        _bars(axis, [f"{r.fault.name} / {r.kind}" for r in abft_rows], parts)
        axis.set_title("ABFT (detection only)", fontsize=10, loc="left")
    axes[-1, 0].set_xlabel(f"share of trials ({result.trials:,} per bar, seed {result.seed})")
    legend: dict[str, Any] = {}
    for axis in axes[:, 0]:
        for handle, name in zip(*axis.get_legend_handles_labels(), strict=True):
            legend.setdefault(name, handle)
    figure.legend(
        list(legend.values()), list(legend), loc="upper center", ncol=5, fontsize=8, frameon=False
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path, dpi=110)
    plt.close(figure)
