"""`groundsw tm plot`: parameters against time (UTC) in one PNG, with their limit lines."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from groundsw.archive import Sample
from telemetry_defs.model import Dictionary
from telemetry_defs.valuetypes import EnumType

SUFFIXES = (".png", ".svg", ".pdf")


class PlotError(Exception):
    """The plot cannot be made or written; one sentence."""


def plot_parameters(
    samples_by_name: dict[str, list[Sample]], dictionary: Dictionary, out: Path
) -> None:
    """One axes per parameter, sharing the time axis."""
    if out.suffix.lower() not in SUFFIXES:
        raise PlotError(f"cannot write a plot to {out}: use one of {', '.join(SUFFIXES)}")
    empty = [name for name, samples in samples_by_name.items() if not samples]
    if empty:
        raise PlotError(f"no samples of {empty[0]} in the archive for that time span")
    # Names are checked before a figure exists: an unknown one leaves nothing open.
    parameters = {name: dictionary.parameter(name) for name in samples_by_name}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(samples_by_name)
    fig, axes = plt.subplots(count, 1, sharex=True, figsize=(10, 2.6 * count), squeeze=False)
    for ax, (name, samples) in zip(axes[:, 0], samples_by_name.items(), strict=True):
        parameter = parameters[name]
        times = [dt.datetime.fromtimestamp(s.received_at, dt.UTC) for s in samples]
        if isinstance(parameter.type, EnumType):
            values = [float(s.raw) for s in samples]
            ax.step(times, values, where="post")
            ticks = sorted(parameter.type.values.items(), key=lambda kv: kv[1])
            ax.set_yticks([v for _, v in ticks], [n for n, _ in ticks])
        else:
            values = [
                float(s.engineering) if s.engineering is not None else float(s.raw) for s in samples
            ]
            ax.plot(times, values, marker=".", linewidth=1)
        limits = parameter.limits
        if limits is not None:
            for value, colour in (
                (limits.yellow_low, "gold"),
                (limits.yellow_high, "gold"),
                (limits.red_low, "red"),
                (limits.red_high, "red"),
            ):
                if value is not None:
                    ax.axhline(value, color=colour, linestyle="--", linewidth=1)
        ax.set_ylabel(f"{name}\n[{parameter.unit}]" if parameter.unit else name)
        ax.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel("time (UTC)")
    fig.autofmt_xdate()
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as exc:
        raise PlotError(f"cannot write {out}: {exc.strerror}") from None
    finally:
        plt.close(fig)
