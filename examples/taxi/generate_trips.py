#!/usr/bin/env python3
"""Write synthetic NYC yellow-taxi trips shaped like the TLC January 2018 CSV.

The real `yellow_tripdata_2018-01.csv` is ~8.8 M rows (~0.8 GB), is no longer
published as CSV, and cannot be downloaded where the image is built. The cars
only need plausible rows to stream, so the image generates them at build
time: same header, January 2018 pickups with a daily rhythm, log-normal trip
distances, fares from the 2018 meter rules, airport flat fares, card tips,
zone ids 1-263. Seeded, so every build produces the same file.

    python3 generate_trips.py --rows 20000 --out /data/yellow_tripdata_2018-01.csv
"""

from __future__ import annotations

import argparse
import bisect
import csv
import itertools
import logging
import math
import random
import sys
from datetime import datetime, timedelta

log = logging.getLogger("generate_trips")

HEADER = [
    "VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "passenger_count", "trip_distance",
    "RatecodeID", "store_and_fwd_flag", "PULocationID", "DOLocationID", "payment_type", "fare_amount",
    "extra", "mta_tax", "tip_amount", "tolls_amount", "improvement_surcharge", "total_amount",
]

MONTH_START = datetime(2018, 1, 1)
DAYS = 31
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# Share of the day's pickups per hour, shaped like Manhattan yellow cabs (quiet at 5 am, busiest 6-9 pm).
HOURLY_WEIGHTS = [
    3.5, 2.6, 1.9, 1.4, 1.0, 1.1, 2.4, 3.9, 4.6, 4.7, 4.6, 4.8,
    5.1, 5.1, 5.4, 5.3, 4.8, 5.6, 6.4, 6.3, 5.8, 5.8, 5.6, 4.6,
]

JFK, LAGUARDIA, NEWARK = 132, 138, 1
# Busy taxi zones (Midtown, Upper East/West Side, Chelsea, Village, Penn Station...), busiest first.
POPULAR_ZONES = [
    237, 161, 236, 162, 230, 170, 48, 234, 186, 142, 163, 239, 141, 79, 68, 107, 238, 263, 246, 249,
    90, 113, 100, 164, 140, 137, 43, 114, 233, 229, 231, 158, 211, 125, 144, 148, 87, 13, 261, 41,
]
ZONE_COUNT = 263

# (RatecodeID, probability): standard, JFK, Newark, Nassau/Westchester, negotiated.
RATECODES = [(1, 0.972), (2, 0.021), (3, 0.002), (4, 0.0015), (5, 0.0035)]
PASSENGERS = [(1, 0.71), (2, 0.145), (3, 0.04), (4, 0.019), (5, 0.047), (6, 0.028), (0, 0.001)]
PAYMENTS = [(1, 0.70), (2, 0.285), (3, 0.01), (4, 0.005)]  # card, cash, no charge, dispute

JFK_FLAT_FARE = 52.0
TOLL = 5.76  # a bridge or tunnel toll in 2018
MTA_TAX = 0.5
IMPROVEMENT_SURCHARGE = 0.3


def choose(rng: random.Random, table: list[tuple[int, float]]) -> int:
    values, weights = zip(*table, strict=True)
    return rng.choices(values, weights=weights)[0]


class ZonePicker:
    """Zones 1-263: mostly the busy Manhattan ones (Zipf-like), otherwise any zone."""

    def __init__(self) -> None:
        weights = [1 / (rank + 1) ** 0.6 for rank in range(len(POPULAR_ZONES))]
        self._cumulative = list(itertools.accumulate(weights))

    def pick(self, rng: random.Random, popular_share: float) -> int:
        if rng.random() < popular_share:
            x = rng.random() * self._cumulative[-1]
            return POPULAR_ZONES[bisect.bisect(self._cumulative, x)]
        return rng.randint(1, ZONE_COUNT)


def pickup_times(rng: random.Random, rows: int) -> list[datetime]:
    """Sorted pickup times in January 2018 (the TLC files are roughly in pickup order)."""
    hours = rng.choices(range(24), weights=HOURLY_WEIGHTS, k=rows)
    offsets = sorted(rng.randrange(DAYS) * 86400 + hour * 3600 + rng.randrange(3600) for hour in hours)
    return [MONTH_START + timedelta(seconds=s) for s in offsets]


def is_rush(when: datetime) -> bool:
    return when.weekday() < 5 and 7 <= when.hour < 20


def surcharge(when: datetime) -> float:
    """The 2018 'extra': 50c overnight (8 pm-6 am), $1 on weekday evening rush (4-8 pm)."""
    if when.hour >= 20 or when.hour < 6:
        return 0.5
    if when.weekday() < 5 and 16 <= when.hour < 20:
        return 1.0
    return 0.0


def metered_fare(distance: float, minutes: float, mph: float) -> float:
    """$2.50 flag drop, 50c per 1/5 mile, 50c per minute spent crawling (approximated from the speed)."""
    crawl_minutes = minutes * max(0.0, 1 - mph / 12) if mph < 12 else 0.0
    fare = 2.5 + 0.5 * math.ceil(distance / 0.2) + 0.5 * crawl_minutes
    return round(fare * 2) / 2  # the meter moves in 50c steps


def trip(rng: random.Random, zones: ZonePicker, pickup: datetime) -> list:
    """One CSV row."""
    vendor = 2 if rng.random() < 0.56 else 1
    ratecode = choose(rng, RATECODES)
    passengers = choose(rng, PASSENGERS)
    payment = choose(rng, PAYMENTS)

    pu, do = zones.pick(rng, 0.88), zones.pick(rng, 0.80)
    if ratecode == 2:  # JFK flat fare, to or from the airport
        distance = max(12.0, rng.gauss(17.5, 2.0))
        pu, do = (JFK, do) if rng.random() < 0.5 else (pu, JFK)
    elif ratecode == 3:
        distance = max(10.0, rng.gauss(17.0, 3.0))
        do = NEWARK
    elif ratecode == 4:
        distance = max(8.0, rng.gauss(20.0, 5.0))
        do = rng.randint(1, ZONE_COUNT)
    else:
        distance = min(45.0, rng.lognormvariate(math.log(1.6), 0.85))
        if rng.random() < 0.03:  # LaGuardia runs
            distance = max(distance, rng.gauss(9.5, 1.5))
            pu, do = (LAGUARDIA, do) if rng.random() < 0.5 else (pu, LAGUARDIA)
    if ratecode == 1 and rng.random() < 0.006:
        distance = 0.0  # cancelled or stationary trips exist in the real data

    base_mph = 9.5 if is_rush(pickup) else 15.0 if pickup.hour < 6 else 12.0
    mph = base_mph * rng.lognormvariate(0, 0.3) * (1.6 if distance > 8 else 1.0)
    minutes = distance / mph * 60 + rng.uniform(0.5, 3.0)
    dropoff = pickup + timedelta(seconds=round(minutes * 60))

    extra = surcharge(pickup)
    mta_tax = MTA_TAX
    if ratecode == 2:
        fare, extra = JFK_FLAT_FARE, (4.5 if is_rush(pickup) and 16 <= pickup.hour < 20 else 0.0)
    elif ratecode == 5:
        fare, extra, mta_tax = float(rng.randrange(10, 101, 5)), 0.0, 0.0
    elif ratecode in (3, 4):
        fare = metered_fare(distance, minutes, mph) * (2 if ratecode == 4 else 1) + (17.5 if ratecode == 3 else 0)
    else:
        fare = metered_fare(distance, minutes, mph)

    tolls = 0.0
    if (ratecode in (2, 3, 4) and rng.random() < 0.45) or (distance > 6 and rng.random() < 0.12):
        tolls = 15.0 if ratecode == 3 else TOLL

    tip = 0.0
    if payment == 1 and rng.random() < 0.9:  # card: mostly the screen's 20/25/30% buttons
        if rng.random() < 0.6:
            share = rng.choices([0.20, 0.25, 0.30], weights=[0.7, 0.2, 0.1])[0]
        else:
            share = max(0.0, rng.gauss(0.17, 0.06))
        tip = round((fare + extra + mta_tax + IMPROVEMENT_SURCHARGE + tolls) * share, 2)

    total = round(fare + extra + mta_tax + tip + tolls + IMPROVEMENT_SURCHARGE, 2)
    return [
        vendor,
        pickup.strftime(TIME_FORMAT),
        dropoff.strftime(TIME_FORMAT),
        passengers,
        f"{distance:.2f}",
        ratecode,
        "Y" if vendor == 1 and rng.random() < 0.008 else "N",
        pu,
        do,
        payment,
        f"{fare:.2f}",
        f"{extra:.2f}",
        f"{mta_tax:.2f}",
        f"{tip:.2f}",
        f"{tolls:.2f}",
        f"{IMPROVEMENT_SURCHARGE:.2f}",
        f"{total:.2f}",
    ]


def write_trips(out, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    zones = ZonePicker()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for pickup in pickup_times(rng, rows):
        writer.writerow(trip(rng, zones, pickup))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000, help="number of trips (default 20000)")
    parser.add_argument("--out", default="-", help="CSV file to write, '-' for stdout (default)")
    parser.add_argument("--seed", type=int, default=2018, help="random seed (default 2018)")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must not be negative")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.out == "-":
        write_trips(sys.stdout, args.rows, args.seed)
    else:
        with open(args.out, "w", newline="") as f:
            write_trips(f, args.rows, args.seed)
        log.info("wrote %d trips to %s", args.rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
