"""The deployment on disk, beside the metrics: what a new API needs when the one before it was killed.

The API keeps its deployment in memory; killed with SIGKILL it leaves
containers, links, rules and helpers (or Swarm services) behind and nobody
who knows of them. So the controller writes this record before it creates
anything, rewrites it after every change that it applied (the plan's
instances, each action), and removes it after a complete undeploy. A new
API that finds a record whose process is gone reports it and removes what
that deployment left; the model stays known, so `POST /topology/` without a
file deploys it again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE = "deployment.json"


class DeploymentRecord:
    """`<data dir>/deployment.json`, written atomically (a kill between two writes leaves one whole file)."""

    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / FILE
        self.data: dict[str, Any] | None = None

    def start(self, backend: str, options: dict[str, Any], model: str, files: dict[str, bytes] | None = None) -> None:
        """`files`: those uploaded with the model (its traces), kept once beside the record
        (`deployment-files/<n>`), not in it: the record is rewritten after every action."""
        self._remove_files()
        names = {}
        if files:
            self.files_dir.mkdir(parents=True, exist_ok=True)
            for number, (name, content) in enumerate(sorted(files.items())):
                (self.files_dir / str(number)).write_bytes(content)
                names[name] = str(number)
        self.data = {"pid": os.getpid(), "started": _start_time(os.getpid()), "backend": backend,
                     "options": options, "status": "deploying", "model": model, "created": time.time(),
                     "files": names, "instances": [], "actions": []}
        self._write()

    @property
    def files_dir(self) -> Path:
        return self.path.parent / "deployment-files"

    def files(self, data: dict[str, Any]) -> dict[str, bytes]:
        """The files a record says were uploaded with its model (for deploying that model again)."""
        found = {}
        for name, stored in (data.get("files") or {}).items():
            try:
                found[name] = (self.files_dir / Path(str(stored)).name).read_bytes()
            except OSError as error:
                log.warning("file %s uploaded with the recorded model is gone (%s)", name, error)
        return found

    def _remove_files(self) -> None:
        if self.files_dir.is_dir():
            for path in self.files_dir.iterdir():
                path.unlink(missing_ok=True)
            self.files_dir.rmdir()

    def update(self, **fields: Any) -> None:
        if self.data is not None:
            self.data.update(fields)
            self._write()

    def applied(self, kind: str, params: dict, instances: list[str]) -> None:
        """An action took effect: keep it (with the instances as they are now)."""
        if self.data is not None:
            self.data["actions"].append({"type": kind, "params": params, "ts": time.time()})
            self.data["instances"] = instances
            self._write()

    def clear(self) -> None:
        self.data = None
        self.path.unlink(missing_ok=True)
        self._remove_files()

    def left_by_a_dead_process(self) -> dict[str, Any] | None:
        """The record on disk, if the process that wrote it is gone (killed, crashed)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            log.warning("unreadable deployment record %s (%s); ignoring it", self.path, error)
            return {"pid": 0, "backend": "local", "options": {}, "status": "unknown", "model": None,
                    "instances": [], "actions": []}
        pid = int(data.get("pid") or 0)
        if pid and _start_time(pid) == data.get("started"):
            return None  # its process still runs (the same data dir twice: not ours to touch)
        return data

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, default=str))
        os.replace(tmp, self.path)


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
