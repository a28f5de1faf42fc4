"""The API and the agent run on waitress with bounds: threads, idle connections, body and header sizes, signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import requests
from flask import Flask

from fogify_net.host import wsgi


def running(app, **options):
    server = wsgi.wsgi_server(app, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{server.effective_port}"


def tiny_app() -> Flask:
    app = Flask("t")
    seen = set()

    @app.post("/echo")
    def echo():
        seen.add(threading.get_ident())
        time.sleep(0.2)
        return {"threads": len(seen)}

    return app


def test_bodies_past_the_bound_are_refused_before_the_app():
    server, thread, url = running(tiny_app())
    try:
        assert requests.post(f"{url}/echo", data=b"x" * 10).status_code == 200
        response = requests.post(f"{url}/echo", data=b"x" * (wsgi.MAX_BODY_BYTES + 1))
        assert response.status_code == 413
        response = requests.post(f"{url}/echo", headers={"X-Big": "y" * (wsgi.MAX_HEADER_BYTES + 1)})
        assert response.status_code == 431 or response.status_code == 400
    finally:
        wsgi.stop(server)
        thread.join(5)


def test_requests_share_a_fixed_pool_of_threads():
    server, thread, url = running(tiny_app(), threads=3)
    try:
        results = []
        workers = [threading.Thread(target=lambda: results.append(requests.post(f"{url}/echo").json()))
                   for _ in range(12)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(10)
        assert len(results) == 12 and max(r["threads"] for r in results) <= 3
    finally:
        wsgi.stop(server)
        thread.join(5)


def test_an_idle_connection_is_closed():
    server, thread, url = running(tiny_app(), channel_timeout=1)
    try:
        with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as idle:
            idle.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\n")  # a header, then nothing
            started = time.monotonic()
            assert idle.recv(1) == b""  # closed by the server
            assert time.monotonic() - started < 8
    finally:
        wsgi.stop(server)
        thread.join(5)


def test_the_api_stops_on_sigterm(tmp_path):
    port = 5900 + os.getpid() % 50
    env = {**os.environ, "FOGIFY_RUN_DIR": str(tmp_path / "run"), "FOGIFY_LOG_DIR": str(tmp_path / "log")}
    api = subprocess.Popen([sys.executable, "-m", "fogify_net.cli", "api", "--port", str(port),
                            "--data-dir", str(tmp_path / "data")], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/status/", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and api.poll() is None, api.stdout.read().decode()
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.headers.get("Server") == "fogify-net"
        api.send_signal(signal.SIGTERM)
        assert api.wait(20) == 0
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()
