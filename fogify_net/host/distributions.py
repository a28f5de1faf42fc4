"""Custom delay distributions on this machine: kept in the API's data dir, installed where tc reads tables.

The API keeps each distribution (its statistics and table) as JSON in its data
directory, so a distribution made once stays usable across deployments and
restarts of the API. netem takes a distribution by name and tc reads its
table from `<lib dir>/<name>.dist` (iproute2's tc/q_netem.c get_distribution),
the lib dir being $TC_LIB_DIR or the one compiled into tc (where iproute2 put
normal.dist: /usr/lib/tc, or /usr/lib/<multiarch>/tc on Debian). Ours are named
`fogify-net-<name>.dist`, so cleanup removes exactly those.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from ..compile.naming import DISTRIBUTION_PREFIX, netem_distribution
from ..compile.tc import distribution_file
from ..model.distributions import from_json, to_json
from ..model.schema import DelayDistribution

log = logging.getLogger(__name__)

_LIB_DIRS = ("/usr/lib/tc", "/usr/lib64/tc", "/lib/tc", "/usr/local/lib/tc")


def tc_lib_dir() -> Path:
    """Where tc looks for distribution tables: $TC_LIB_DIR, else the directory iproute2 put its own in."""
    if os.environ.get("TC_LIB_DIR"):
        return Path(os.environ["TC_LIB_DIR"])
    candidates = [Path(d) for d in _LIB_DIRS] + sorted(Path("/usr/lib").glob("*/tc"))
    for directory in candidates:
        if (directory / "normal.dist").exists():
            return directory
    return Path(_LIB_DIRS[0])


def install_tc_tables(distributions: Iterable[DelayDistribution]) -> list[Path]:
    """Write each distribution's table for tc (only where it changed); returns the files."""
    directory = tc_lib_dir()
    written = []
    for distribution in distributions:
        path = directory / f"{netem_distribution(distribution.name, builtin=False)}.dist"
        text = distribution_file(distribution)
        if not path.exists() or path.read_text() != text:
            directory.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_text(text)
            temporary.replace(path)  # tc never reads half a table
            log.info("installed delay distribution table %s", path)
        written.append(path)
    return written


def remove_tc_tables(paths: Iterable[Path] | None = None) -> list[str]:
    """Remove our tables (these, or every `fogify-net-*.dist` in tc's lib dir); returns what went."""
    if paths is None:
        paths = tc_lib_dir().glob(f"{DISTRIBUTION_PREFIX}*.dist")
    removed = []
    for path in paths:
        if path.name.startswith(DISTRIBUTION_PREFIX) and path.suffix == ".dist" and path.exists():
            path.unlink()
            removed.append(f"tc distribution table {path}")
    return removed


class DistributionStore:
    """The custom distributions of one API, as `<data dir>/distributions/<name>.json`."""

    def __init__(self, data_dir: str | Path):
        self.directory = Path(data_dir) / "distributions"

    def save(self, distribution: DelayDistribution) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{distribution.name}.json"
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps(to_json(distribution)))
        temporary.replace(path)

    def all(self) -> dict[str, DelayDistribution]:
        """Every stored distribution by name; an unreadable file is skipped with a warning."""
        found = {}
        for path in sorted(self.directory.glob("*.json")):
            try:
                distribution = from_json(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.warning("skipping delay distribution %s: %s", path, error)
                continue
            found[distribution.name] = distribution
        return found
