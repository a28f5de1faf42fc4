"""fogify-net: a network-first fog/edge/IoT testbed emulator on Mininet and Docker."""

from setuptools import find_packages, setup

setup(
    name="fogify-net",
    version="0.1.0",
    description="Emulate fog, edge and IoT deployments from a fogified docker-compose file on Mininet and Docker",
    python_requires=">=3.9",
    packages=(find_packages(include=["fogify_net", "fogify_net.*"])
              + ["fogify_net_api"] + [f"fogify_net_api.{name}" for name in find_packages("api")]),
    package_dir={"fogify_net_api": "api"},
    package_data={
        "fogify_net.host.delayline": ["delayd.c", "Makefile"],
        "fogify_net_api": ["openapi.yaml"],
    },
    install_requires=[
        "docker>=5",
        "flask>=2.2",
        "pyyaml>=5.4",
        "requests>=2.25",
        "tqdm>=4.60",
        "waitress>=2.1",
    ],
    extras_require={"test": ["pytest>=7", "pandas>=1.5", "matplotlib>=3.6", "openapi-spec-validator>=0.7",
                             "openapi-schema-validator>=0.6"]},
    entry_points={"console_scripts": ["fogify-net=fogify_net.cli:main"]},
)
