"""A topology written in Python, as a fogified compose document: what `fogify-net deploy topo.py` sends.

The file is imported (its `if __name__ == "__main__":` part does not run) and
gives its topology in one of these ways, tried in this order:

- `build(params)`: a function taking the `--param` values as a dict and
  returning a Mininet `Topo`, an unstarted `Containernet`, a `ModelBuilder`
  or a compose document (a dict);
- `topos`: Mininet's `--custom` dictionary of names to Topo classes (or
  functions); with several, `--param topo=<name>` picks one;
- exactly one `Topo` subclass defined in the file, made with the `--param`
  values as keyword arguments (`--param depth=2` -> `MyTopo(depth=2)`).

Values of `--param k=v` are read as YAML scalars: `3` is a number, `true` a
boolean, `10Mbps` text.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

import yaml

from ..model import ModelBuilder, ModelError


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`k=v` strings as a dict, values read as YAML scalars."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ModelError("--param", f"expected KEY=VALUE, got {pair!r}")
        params[key] = yaml.safe_load(value) if value else ""
    return params


def load_topology(path: str | Path, params: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The compose document of the topology file at `path`, and warnings about it."""
    from mininet.topo import Topo

    from .net import Containernet

    params = dict(params or {})
    module = _import(Path(path))
    if callable(getattr(module, "build", None)):
        made = module.build(params)
    elif isinstance(getattr(module, "topos", None), dict) and module.topos:
        topos = module.topos
        name = params.pop("topo", None) or (next(iter(topos)) if len(topos) == 1 else None)
        if name not in topos:
            raise ModelError("--param topo", f"pick one of the file's topos: {', '.join(topos)}")
        made = _call(topos[name], params, f"topos[{name!r}]")
    else:
        mine = [value for value in vars(module).values()
                if inspect.isclass(value) and issubclass(value, Topo) and value.__module__ == module.__name__]
        if len(mine) != 1:
            found = ", ".join(cls.__name__ for cls in mine) or "none"
            raise ModelError(str(path), "define build(params), a topos dictionary, or exactly one Topo subclass "
                             f"(found: {found})")
        made = _call(mine[0], params, mine[0].__name__)
    if isinstance(made, Topo):
        made = Containernet(topo=made)
    if isinstance(made, Containernet):
        return made.document()
    if isinstance(made, ModelBuilder):
        return made.document(), []
    if isinstance(made, dict):
        return made, []
    raise ModelError(str(path), f"the topology is a {type(made).__name__}; expected a Topo, a Containernet, "
                     "a ModelBuilder or a compose document")


def _import(path: Path):
    if not path.is_file():
        raise ModelError(str(path), "no such file")
    name = f"fogify_topology_{path.stem.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _call(factory: Any, params: dict[str, Any], what: str) -> Any:
    try:
        return factory(**params)
    except TypeError as error:
        raise ModelError("--param", f"{what}: {error}") from None
