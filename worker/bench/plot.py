"""The PNG: latency percentiles against offered load, and what the pipeline completed (needs matplotlib).

Left: p50/p90/p99 of the whole send (send() call → result) per offered load, with the provider's
own response time as a dashed line, so the gap above it is the added latency (log scale: the gap
spans 1 ms to seconds once the load passes capacity). Right: completed against offered msg/s
(log-log, so offered is the diagonal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def available() -> bool:
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


def latency_png(results: dict[str, Any], path: Path) -> Path:
    """Draw the sweep; raises ImportError without matplotlib."""
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    from matplotlib import pyplot  # type: ignore[import-not-found, unused-ignore]
    from matplotlib.ticker import NullFormatter  # type: ignore[import-not-found, unused-ignore]

    sweep = results["ours"]["sweep"]
    meta = results["meta"]
    provider = results["direct"]["slow"]["p50"]
    rates = [p["offered_msg_per_s"] for p in sweep]
    figure, (latency, throughput) = pyplot.subplots(
        1, 2, figsize=(11, 4.8), dpi=110, gridspec_kw={"width_ratios": [3, 2]}
    )
    for q, style in (("p50", "o-"), ("p90", "s-"), ("p99", "^-")):
        values = [p["latency"][q] for p in sweep]
        latency.plot(rates, [float("nan") if v is None else v for v in values], style, label=f"{q}")
    if provider:
        latency.axhline(provider, color="grey", linestyle="--", linewidth=1, label="provider's own p50")
    latency.set_yscale("log")
    latency.set_ylabel("send() → result (ms)")
    latency.set_title("latency percentiles", fontsize=10)
    latency.legend(fontsize=8)
    throughput.plot(rates, [p["completed_msg_per_s"] for p in sweep], "o-", label="completed")
    throughput.plot(rates, rates, ":", color="grey", label="offered")
    throughput.set_ylabel("msg/s")
    throughput.set_title("throughput", fontsize=10)
    throughput.legend(fontsize=8)
    throughput.set_yscale("log")
    completed = [p["completed_msg_per_s"] for p in sweep]
    ticks = sorted({*rates, round(max(completed, default=0))} - {0})
    throughput.set_yticks(ticks, [f"{t:g}" for t in ticks])
    throughput.yaxis.set_minor_formatter(NullFormatter())
    for axes in (latency, throughput):
        axes.set_xscale("log")
        axes.set_xticks(rates, [str(r) for r in rates])
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel("offered load (msg/s, open loop)")
        axes.grid(True, which="both", alpha=0.3)
    figure.suptitle(
        f"midcall-sms against offered load: {meta['workers']} worker(s) × {meta['concurrency']} threads, "
        f"provider {meta['provider_latency_ms']:g} ms, {meta['cpus']} CPUs"
        + (" (--quick: smoke counts)" if meta["quick"] else ""),
        fontsize=11,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
    return path
