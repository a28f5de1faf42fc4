#!/usr/bin/env python3
"""Cars driving from one region to another: the taxi model's scenario_mobility, through the FogifySDK.

Deploys the taxi model, lets the cars send for a while, runs scenario_mobility
on the server (its routes move car-workload-1.1 into region 2 and back, and
car-workload-2.1 the other way, while region 2's edge is 40 ms away), then
draws each car's request latency with the moves marked
(mobility_latency.png) and writes the median latency of every car in each
part of the drive (mobility_summary.txt), and undeploys.

    python3 mobility.py --url http://127.0.0.1:5000 --out output/ [--scale 0.5]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from FogifySDK import FogifySDK  # noqa: E402

HERE = Path(__file__).resolve().parent
SCENARIO = "scenario_mobility"
CARS = {  # car -> where it is in each part of the drive
    "car-workload-1.1": ("region 1", "region 2", "region 1"),
    "car-workload-2.1": ("region 2", "region 1", "region 2"),
    "car-workload-1.2": ("region 1", "region 1", "region 1"),
    "car-workload-2.2": ("region 2", "region 2", "region 2"),
}
SETTLE = 3.0  # seconds after a move left out of a part's median (the car finds its new edge within ~1 s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("FOGIFY_URL", "http://127.0.0.1:5000"))
    parser.add_argument("--compose", default=str(HERE / "docker-compose.yaml"))
    parser.add_argument("--out", default=str(HERE / "output"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the scenario's times by this")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    fogify = FogifySDK(args.url, args.compose)
    scenario = next(s for s in fogify.scenarios if s["name"] == SCENARIO)
    scale(scenario, args.scale)
    print(fogify.deploy(timeout=600)["message"])
    try:
        print(f"waiting {20 * args.scale:.0f} s: the cars start sending", flush=True)
        time.sleep(20 * args.scale)
        start, end = fogify.run_scenario(SCENARIO)
        time.sleep(2)
        summary = draw(fogify, out, start, end, args.scale)
    finally:
        print(fogify.undeploy(timeout=600)["message"])
    (out / "mobility_summary.txt").write_text(summary)
    print(summary)
    print(f"picture and summary in {out}")
    return 0


def scale(scenario: dict, factor: float) -> None:
    """The scenario's waits and the routes' waypoint times, times `factor` (the overlaps stay)."""
    for action in scenario["actions"]:
        action["time"] = action["time"] * factor
    for route in scenario.get("routes", []):
        for waypoint in route["route"]:
            waypoint["at"] = waypoint["at"] * factor


def draw(fogify: FogifySDK, out: Path, start, end, factor: float) -> str:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    frames = {}
    for car in CARS:
        frame = fogify.get_metrics_from(car)
        frame = frame[(frame.index > start) & (frame.index < end)]
        frames[car] = frame
        if "send_latency_ms" in frame:
            frame["send_latency_ms"].plot(ax=ax, label=car, marker=".", linestyle="-")
    fogify.plot_annotations(ax, start=start, stop=end, colors_gist=["gray"])
    ax.set_ylabel("ms")
    ax.set_title("Request latency of each car to its edge: the moving cars' latency follows their region")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "mobility_latency.png", dpi=110)
    plt.close(fig)
    print(f"wrote {out / 'mobility_latency.png'}")

    parts = [(0, 30 * factor), (30 * factor, 60 * factor), (60 * factor, 90 * factor)]
    rows = []
    for car, regions in CARS.items():
        latency = frames[car].get("send_latency_ms", pd.Series(dtype=float)).dropna()
        seconds = (latency.index - pd.Timestamp(start)).total_seconds()
        medians = []
        for (begin, finish), region in zip(parts, regions):
            inside = latency[(seconds >= begin + (SETTLE if begin else 0)) & (seconds < finish)]
            medians.append(f"{inside.median():.1f} ({region})" if len(inside) else f"- ({region})")
        rows.append([car, *medians])
    table = pd.DataFrame(rows, columns=["car", "0-30 s", "30-60 s", "60-90 s"] if factor == 1 else
                         ["car", "part 1", "part 2", "part 3"])
    return ("median send_latency_ms of each car in each part of the drive (region 2's edge is 40 ms away):\n"
            + table.to_string(index=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
