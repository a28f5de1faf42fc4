"""Entry point of the taxi example: one image, three roles chosen by NODE_TYPE.

    IOT_NODE    a car streaming trip records (car.py)
    EDGE_NODE   a regional edge server batching them to the cloud (edge.py)
    CLOUD_NODE  the cloud server storing them (cloud.py)

Every role listens on PORT (8000) for /health and /stats, and refreshes its
metrics in /fogify/metrics every second. The process runs a fixed set of
threads (HTTP server, the role's worker, the metrics publisher) and stops
cleanly on SIGTERM, so `docker stop` (an undeploy) does not wait for a kill.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import car
import cloud
import edge
from metrics import publish_forever
from settings import Common, SettingsError
from web import Server, create_app

log = logging.getLogger("taxi")

BUILDERS = {"IOT_NODE": car.build, "EDGE_NODE": edge.build, "CLOUD_NODE": cloud.build}


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    try:
        common = Common.from_env()
        role = BUILDERS[common.role](common)
        identity = {"role": common.role, "instance": common.instance, **role.identity}
        server = Server(create_app(identity, role.metrics.current, role.blueprint), common.listen_host, common.port)
    except (SettingsError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 2

    stop = threading.Event()
    failed = threading.Event()

    def on_signal(signum, _frame):
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def guarded(worker):
        def run():
            try:
                worker(stop)
            except Exception:
                log.exception("worker %s failed; stopping", getattr(worker, "__qualname__", worker))
                failed.set()
                stop.set()

        return run

    threads = [
        threading.Thread(target=guarded(worker), name=getattr(worker, "__qualname__", "worker"), daemon=True)
        for worker in role.workers
    ]
    # The publisher stops last, so that its final write holds the workers' last counts (a car's
    # POST in flight at SIGTERM is counted when it returns, after `stop`).
    workers_done = threading.Event()
    publisher = threading.Thread(
        target=publish_forever,
        args=(role.metrics, common.metrics_file, common.metrics_interval, workers_done),
        name="metrics",
        daemon=True,
    )
    server.start()
    publisher.start()
    for thread in threads:
        thread.start()
    log.info("%s %s listening on %s:%d", common.role, common.instance, common.listen_host, common.port)

    while not stop.wait(1.0):
        pass
    for thread in threads:
        thread.join(timeout=8)
    server.stop()
    workers_done.set()
    publisher.join(timeout=2)
    return 1 if failed.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
