"""The trip generator: the TLC 2018 header, plausible values, the same file for the same seed."""

from __future__ import annotations

import csv
import io
import statistics
import subprocess
import sys

from taxi_helpers import GENERATOR


def generate(rows: int, seed: int = 2018) -> str:
    return subprocess.run(
        [sys.executable, str(GENERATOR), "--rows", str(rows), "--seed", str(seed)],
        check=True, capture_output=True, text=True,
    ).stdout


def test_same_seed_same_file_other_seed_other_file():
    assert generate(300) == generate(300)
    assert generate(300) != generate(300, seed=7)


def test_rows_look_like_january_2018_yellow_taxi_trips():
    text = generate(3000)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == (
        "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,"
        "store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,"
        "tolls_amount,improvement_surcharge,total_amount"
    )
    assert len(rows) == 3000
    pickups = [r["tpep_pickup_datetime"] for r in rows]
    assert pickups == sorted(pickups) and pickups[0] >= "2018-01-01" and pickups[-1] < "2018-02-01"
    assert all(r["tpep_dropoff_datetime"] >= r["tpep_pickup_datetime"] for r in rows)
    assert all(1 <= int(r[k]) <= 263 for r in rows for k in ("PULocationID", "DOLocationID"))
    distances = [float(r["trip_distance"]) for r in rows]
    assert 1.2 < statistics.median(distances) < 2.5 and 2 < statistics.mean(distances) < 4
    for r in rows:
        parts = ("fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount", "improvement_surcharge")
        assert abs(sum(float(r[k]) for k in parts) - float(r["total_amount"])) < 0.011
        if r["payment_type"] != "1":
            assert float(r["tip_amount"]) == 0
    assert {r["RatecodeID"] for r in rows} >= {"1", "2"}
