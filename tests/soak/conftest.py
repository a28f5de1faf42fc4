"""The soak uses the integration tests' fixtures (the machine lock) and helpers."""

from tests.integration.conftest import machine  # noqa: F401 - a fixture, used by name
