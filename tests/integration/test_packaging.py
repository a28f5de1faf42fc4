"""The project as a user installs it from a checkout without -e: wheels, a fresh venv, every module imported.

The editable install (scripts/install.sh) finds any module in the checkout, so a package without
its __init__.py, or data missing from setup.py, only shows in a built wheel. Here both wheels
(fogify-net and the SDK) are built from this checkout, installed into a new venv that sees
Debian's mininet (as install.sh's does), and every module is imported there, away from the
checkout. The dependencies come from the test run's own venv (no index is reached), after their
names are checked against what the wheel declares.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMPORT_ALL = """
import importlib, json, pkgutil, sys
import fogify_net, fogify_net_api, FogifySDK
names = []
for package in (fogify_net, fogify_net_api, FogifySDK):
    names.append(package.__name__)
    names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "files": [fogify_net.__file__, fogify_net_api.__file__, FogifySDK.__file__]}))
"""

pytestmark = pytest.mark.slow


def run(*argv: str | Path, cwd: Path | None = None) -> str:
    """Run argv without this run's PYTHONPATH (which could point at a checkout) and return stdout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd, timeout=600, env=env)
    assert result.returncode == 0, f"{' '.join(map(str, argv))}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    for source in (REPO, REPO / "sdk"):
        run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, source)
    found = {path.name.split("-")[0].lower(): path for path in out.glob("*.whl")}
    assert set(found) == {"fogify_net", "fogifysdk"}, found
    return found


def test_the_wheel_holds_every_package_and_its_data(wheels) -> None:
    names = set(zipfile.ZipFile(wheels["fogify_net"]).namelist())
    packages = {str(p.parent.relative_to(REPO)) for p in (REPO / "fogify_net").rglob("*.py")}
    for package in packages:
        assert f"{package}/__init__.py" in names, f"{package} is not a package in the wheel"
    for api_file in (REPO / "api").rglob("*.py"):
        assert f"fogify_net_api/{api_file.relative_to(REPO / 'api')}" in names
    for data in ("fogify_net/host/delayline/delayd.c", "fogify_net/host/delayline/Makefile",
                 "fogify_net_api/openapi.yaml"):
        assert data in names


def test_every_module_imports_from_the_wheels_in_a_fresh_venv(wheels, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run("/usr/bin/python3", "-m", "venv", "--system-site-packages", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", *wheels.values())
    # The dependencies the wheel declares, from this test run's venv (its site dir added last).
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    (Path(purelib) / "fgt-test-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    checked = run(python, "-c", "import importlib.metadata as m, json; "
                  "print(json.dumps(sorted(m.requires('fogify-net') or [])))")
    for requirement in json.loads(checked):
        name = requirement.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
        if "extra ==" in requirement:
            continue
        run(python, "-c", f"import importlib.metadata as m; m.version({name!r})")
    answer = json.loads(run(python, "-c", IMPORT_ALL, cwd=tmp_path))
    assert all(str(venv) in path for path in answer["files"]), answer["files"]  # not the checkout
    assert {"fogify_net.controller", "fogify_net.actions.runner", "fogify_net.scenarios.runner",
            "fogify_net.backends.local.manager", "fogify_net_api.routes.actions",
            "FogifySDK.FogifySDK"} <= set(answer["modules"])
    assert "usage: fogify-net" in run(venv / "bin" / "fogify-net", "--help", cwd=tmp_path)
