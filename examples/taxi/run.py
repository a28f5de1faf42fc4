#!/usr/bin/env python3
"""The getting-started walkthrough, steps 5 to 10, through the FogifySDK against a running API.

Deploys the taxi model, reads mec-svc-1's metrics, stresses it, runs the
scenario that degrades its regional network, draws the pictures the
walkthrough shows (plus the cars' latency), writes what each action did to
the metrics, and undeploys. Pictures and the summary go to --out.

    python3 run.py --url http://127.0.0.1:5000 --out output/
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from FogifySDK import FogifySDK  # noqa: E402

HERE = Path(__file__).resolve().parent
EDGE = "mec-svc-1.1"
CARS = ["car-workload-1.1", "car-workload-1.2", "car-workload-2.1", "car-workload-2.2"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("FOGIFY_URL", "http://127.0.0.1:5000"))
    parser.add_argument("--compose", default=str(HERE / "docker-compose.yaml"))
    parser.add_argument("--out", default=str(HERE / "output"))
    parser.add_argument("--scenario", default="scenario_1")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every wait and scenario time by this (0.25 for a quick run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # Step 5: deploy the topology (a progress bar, then a message).
    fogify = FogifySDK(args.url, args.compose)
    for scenario in fogify.scenarios:
        for action in scenario["actions"]:
            action["time"] = action["time"] * args.scale
    print(fogify.deploy(timeout=600)["message"])
    try:
        summary = walkthrough(fogify, out, args.scenario, args.scale)
    finally:
        # Step 10: undeploy (a progress bar, then a message).
        print(fogify.undeploy(timeout=600)["message"])
    (out / "summary.txt").write_text(summary)
    print(summary)
    print(f"pictures and summary in {out}")
    return 0


def walkthrough(fogify: FogifySDK, out: Path, scenario: str, scale: float) -> str:
    lines = []
    wait(40 * scale, "let the cars send records for a while")

    # Step 6: retrieve metrics as a DataFrame and plot the CPU utilisation.
    metrics = fogify.get_metrics_from(EDGE)
    lines.append(f"{EDGE}: {len(metrics)} samples, columns: {', '.join(metrics.columns)}")

    # Step 7: an ad-hoc action: a 70% CPU stress on mec-svc-1.
    stress_seconds = max(10, round(30 * scale))
    stressed_at = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=1)
    fogify.stress("mec-svc-1", cpu=70, duration=stress_seconds)
    wait(stress_seconds + max(5, 10 * scale), "the stress runs, then the edge settles")
    metrics = fogify.get_metrics_from(EDGE)
    fig, ax = plt.subplots(figsize=(9, 4))
    metrics["cpu_util"].plot(ax=ax, label="cpu_util (% of the allocation)")
    fogify.plot_annotations(ax, start=stressed_at, colors_gist=["red"])
    ax.set_title(f"{EDGE}: CPU utilisation, stress of 70% marked")
    ax.legend()
    save(fig, out / "cpu_utilisation.png")
    lines.append("")
    lines.append("What each action did:")
    stress_effect = fogify.effect(EDGE, "cpu_util", window=stress_seconds)
    lines.append(describe(stress_effect[stress_effect.annotation == "STRESS"], "cpu_util of " + EDGE))

    # Step 8: the scenario, executed by the SDK with a progress bar.
    start, end = fogify.scenario_execution(scenario)
    wait(5 * scale, "the last samples of the scenario arrive")

    # Step 9: network out/in of mec-svc-1 on edge-net-1 during the scenario, with its actions.
    data = fogify.get_metrics_from(EDGE)
    data = data[(data.index > start) & (data.index < end)]
    fig, ax = plt.subplots(figsize=(9, 4))
    data["network_tx_edge-net-1"].diff().plot(ax=ax, label="network-out")
    data["network_rx_edge-net-1"].diff().plot(ax=ax, label="network-in")
    ax.legend()
    fogify.plot_annotations(ax, start=start, stop=end, colors_gist=["gray", "darkgray", "gray", "black"])
    ax.set_title(f"{EDGE}: bytes per sample on edge-net-1 during {scenario}")
    save(fig, out / "network_mec-svc-1.png")

    # Beyond the walkthrough: the cars' request latency to their edge, the app's own metric.
    fig, ax = plt.subplots(figsize=(9, 4))
    for car in CARS:
        frame = fogify.get_metrics_from(car)
        frame = frame[(frame.index > start) & (frame.index < end)]
        if "send_latency_ms" in frame:
            frame["send_latency_ms"].plot(ax=ax, label=car, marker=".", linestyle="-")
    fogify.plot_annotations(ax, start=start, stop=end, colors_gist=["gray", "darkgray", "gray", "black"])
    ax.set_ylabel("ms")
    ax.set_title(f"Request latency of each car to its edge server during {scenario}")
    ax.legend()
    save(fig, out / "latency_per_car.png")

    for car, role in (("car-workload-1.1", "region 1, behind mec-svc-1"), ("car-workload-2.1", "region 2, a control")):
        latency = fogify.effect(car, "send_latency_ms", window=max(5.0, 15 * scale))
        lines.append(describe(latency[latency.annotation == "NETWORK"], f"send_latency_ms of {car} ({role})"))
    for label, instance in (("records at the cloud", "cloud-server.1"), ("records at mec-svc-1", EDGE)):
        frame = fogify.get_metrics_from(instance)
        column = "records_received"
        if column in frame and len(frame):
            lines.append(f"{label}: {int(frame[column].iloc[-1])}")
    return "\n".join(lines) + "\n"


def describe(effect: pd.DataFrame, title: str) -> str:
    if effect.empty:
        return f"{title}: no actions to assess"
    wanted = ("annotation", "instance_name", "mean_before", "mean_during", "change_pct", "time_to_recover",
              "median_before", "median_during")
    columns = [c for c in wanted if c in effect]
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 2):
        return f"{title}:\n{effect[columns].to_string(index=False)}"


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def wait(seconds: float, why: str) -> None:
    print(f"waiting {seconds:.0f} s: {why}", flush=True)
    time.sleep(seconds)


if __name__ == "__main__":
    sys.exit(main())
