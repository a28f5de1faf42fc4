"""Scenarios: timed actions fired on the controller's clock."""
