"""The metric store is bounded by default, and /monitorings/ and /packets/ page without changing Fogify's answers."""

from __future__ import annotations

import json

from fogify_net.host.appmetrics import MAX_KEYS, parse_app_metrics
from fogify_net.monitoring import store as store_module
from fogify_net.monitoring.store import MetricStore
from fogify_net_api import create_app


def flow(i: int) -> dict:
    return {"network": "n", "src_ip": "10.0.0.2", "dest_ip": "10.0.0.3", "protocol": "udp", "src_port": i,
            "dest_port": 9, "count": 1, "size": 100, "src_instance": "a.1", "dest_instance": "b.1",
            "src_label": "a", "dest_label": "b", "src_watched": 1, "dest_watched": 0}


def test_records_are_bounded_by_default(tmp_path):
    store = MetricStore(tmp_path / "m.db")
    assert (store.max_rows, store.max_bytes, store.max_packets) == (
        store_module.MAX_RECORDS, store_module.MAX_RECORD_BYTES, store_module.MAX_PACKETS)


def test_record_bytes_are_bounded(tmp_path):
    """An app writing the most it may, every second: the metric text stays within the byte bound."""
    store = MetricStore(tmp_path / "m.db", max_rows=None, max_bytes=200_000)
    big = {f"app_metric_{k:03d}": 1.5e300 for k in range(MAX_KEYS)}
    for second in range(200):
        store.add_round(1000.0 + second * 1.0, {"a.1": big, "b.1": big})
    size = len(json.dumps({k: float(v) for k, v in big.items()}, separators=(",", ":")))
    (text,) = store._conn.execute("SELECT SUM(LENGTH(metrics)) FROM records").fetchone()
    assert text <= 200_000 + 2 * 60 * size  # the bound, plus at most a minute of rounds before a pass
    assert text == store._record_bytes
    newest = store.records("a.1")["a.1"][-1]
    assert newest["count"] == 200  # the oldest went, the newest stayed


def test_packet_rows_are_bounded(tmp_path):
    store = MetricStore(tmp_path / "m.db", max_packets=50)
    for period in range(20):
        store.add_packets(1000.0 + period * 5, [flow(i) for i in range(10)])
    (rows,) = store._conn.execute("SELECT COUNT(*) FROM packets").fetchone()
    assert rows == 50


def test_app_metrics_keep_at_most_max_keys():
    document = {f"k{i}": i for i in range(MAX_KEYS * 3)} | {"x" * 65: 1}
    metrics = parse_app_metrics(json.dumps(document).encode())
    assert len(metrics) == MAX_KEYS and "x" * 65 not in metrics


class Controllerish:
    status, message, emulation = "idle", "", None

    def __init__(self, store):
        self.store = store


def test_monitorings_and_packets_page(tmp_path):
    store = MetricStore(tmp_path / "m.db")
    for second in range(10):
        store.add_round(1000.0 + second, {"a.1": {"cpu": second}, "b.1": {"cpu": -second}})
    store.add_packets(1000.0, [flow(i) for i in range(7)])
    client = create_app(Controllerish(store)).test_client()

    whole = client.get("/monitorings/")
    assert "X-Fogify-Next" not in whole.headers
    assert [r["count"] for r in whole.get_json()["a.1"]] == list(range(1, 11))

    pages, after = [], None
    while True:
        response = client.get("/monitorings/", query_string={"limit": 3, **({"after": after} if after else {})})
        assert response.status_code == 200
        pages.append(response.get_json())
        after = response.headers.get("X-Fogify-Next")
        if after is None:
            break
    assert len(pages) == 7  # 20 records, 3 a page
    joined = {name: [r for page in pages for r in page.get(name, [])] for name in ("a.1", "b.1")}
    assert joined == whole.get_json()

    first = client.get("/packets/", query_string={"limit": 4})
    assert len(first.get_json()["res"]) == 4
    rest = client.get("/packets/", query_string={"after": first.headers["X-Fogify-Next"]})
    assert len(rest.get_json()["res"]) == 3 and "X-Fogify-Next" not in rest.headers
    assert client.get("/packets/").get_json()["res"] == first.get_json()["res"] + rest.get_json()["res"]

    for bad in ({"limit": 0}, {"limit": "x"}, {"limit": 10**7}, {"after": -1}):
        assert client.get("/monitorings/", query_string=bad).status_code == 400
