#!/usr/bin/env python3
"""Make the example traces: synthetic, seeded, the same on every run; nothing is downloaded.

    python3 make_traces.py            # writes the four files next to this script
    python3 make_traces.py DIR        # ... into DIR

- lte-synthetic.csv: 5 minutes of an LTE-like cell at one row a second. The
  bandwidth follows a Markov chain over signal levels (good, fair, poor, edge)
  with a few percent of noise; the delay and the jitter rise as the signal
  falls; loss appears at the cell edge.
- lte-synthetic.down / lte-synthetic.up: 30 seconds of the same kind of cell as
  Mahimahi packet-delivery traces (one millisecond timestamp per 1500-byte
  packet the link may deliver), as `mm-link` reads them. They are not in the
  repository (100,000 lines of timestamps): this script makes them in well
  under a second.
- commuter-train.csv: a 10-minute commute at one row a second: good coverage
  at stations, handovers between cells every 40-70 s while moving (a delay
  spike and some loss), and two tunnels (an outage: bandwidth 0, 100% loss).

The two CSV files are in the repository; tests/unit/test_traces_model.py
checks that this script still makes them byte for byte.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# signal level: (mean downlink Mbit/s, mean uplink Mbit/s, delay ms, jitter ms, loss %)
LEVELS = {
    "good": (30.0, 10.0, 30.0, 2.0, 0.0),
    "fair": (15.0, 5.0, 40.0, 4.0, 0.0),
    "poor": (6.0, 2.0, 60.0, 8.0, 0.1),
    "edge": (2.0, 0.6, 90.0, 15.0, 1.0),
}
MOVES = {  # the chance per second of moving to each neighbouring level
    "good": {"fair": 0.08},
    "fair": {"good": 0.08, "poor": 0.06},
    "poor": {"fair": 0.10, "edge": 0.04},
    "edge": {"poor": 0.20},
}


def markov_levels(rng: random.Random, seconds: int, start: str = "good") -> list[str]:
    level, levels = start, []
    for _ in range(seconds):
        levels.append(level)
        draw, total = rng.random(), 0.0
        for neighbour, chance in MOVES[level].items():
            total += chance
            if draw < total:
                level = neighbour
                break
    return levels


def lte_csv(rng: random.Random, seconds: int = 300) -> str:
    rows = ["# synthetic LTE-like cell, one row a second (make_traces.py); bandwidth Mbit/s, delay and jitter ms",
            "time_s,bandwidth,delay,jitter,loss"]
    for t, level in enumerate(markov_levels(rng, seconds)):
        down, _, delay, jitter, loss = LEVELS[level]
        rows.append(f"{t},{down * rng.uniform(0.85, 1.15):.2f},{delay * rng.uniform(0.9, 1.1):.1f},"
                    f"{jitter:.1f},{loss:g}")
    return "\n".join(rows) + "\n"


def mahimahi(rng: random.Random, levels: list[str], uplink: bool) -> str:
    """Delivery opportunities at each level's rate, Poisson-like within each 100 ms slot."""
    stamps: list[int] = []
    for second, level in enumerate(levels):
        mbits = LEVELS[level][1 if uplink else 0]
        for slot in range(10):
            rate = mbits * rng.uniform(0.8, 1.2) * 1e6 / 8 / 1500  # packets a second
            count = int(rate / 10 + rng.random())
            start = second * 1000 + slot * 100
            stamps += sorted(start + rng.randrange(100) for _ in range(count))
    stamps.append(len(levels) * 1000)  # the period: Mahimahi loops at the last timestamp
    return "\n".join(str(s) for s in stamps) + "\n"


def commuter_train_csv(rng: random.Random) -> str:
    """Stations (good), running between them (fair to poor, handovers), two tunnels (outages)."""
    rows = ["# a synthetic 10-minute commute, one row a second (make_traces.py); bandwidth Mbit/s, delay and "
            "jitter ms; bandwidth 0 is an outage", "time_s,bandwidth,delay,jitter,loss"]
    plan = [("station", 40), ("run", 110), ("tunnel", 25), ("run", 60), ("station", 35), ("run", 140),
            ("tunnel", 40), ("run", 80), ("station", 70)]
    t = 0
    next_handover = rng.randint(40, 70)
    for part, seconds in plan:
        for _ in range(seconds):
            if part == "tunnel":
                rows.append(f"{t},0,200,0,100")
            else:
                level = "good" if part == "station" else rng.choice(["fair", "fair", "poor", "poor", "edge"])
                down, _, delay, jitter, loss = LEVELS[level]
                if part == "run" and t >= next_handover:
                    delay, loss = delay + rng.uniform(80, 150), max(loss, 2.0)  # a handover between cells
                    next_handover = t + rng.randint(40, 70)
                rows.append(f"{t},{down * rng.uniform(0.8, 1.2):.2f},{delay * rng.uniform(0.9, 1.1):.1f},"
                            f"{jitter:.1f},{loss:g}")
            t += 1
    return "\n".join(rows) + "\n"


NAMES = ("lte-synthetic.csv", "lte-synthetic.down", "lte-synthetic.up", "commuter-train.csv")


def make(folder: Path = HERE) -> list[Path]:
    """Write the traces into `folder`; the paths written."""
    rng = random.Random(20261126)
    texts = {"lte-synthetic.csv": lte_csv(rng)}
    levels = markov_levels(rng, 30)
    texts["lte-synthetic.down"] = mahimahi(rng, levels, uplink=False)
    texts["lte-synthetic.up"] = mahimahi(rng, levels, uplink=True)
    texts["commuter-train.csv"] = commuter_train_csv(rng)
    folder.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        (folder / name).write_text(texts[name])
    return [folder / name for name in NAMES]


def main() -> None:
    for path in make(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
