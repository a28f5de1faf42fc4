"""Settings for every test under tests/."""

pytest_plugins = ["tests.no_skip"]
