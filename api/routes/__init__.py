"""One blueprint per resource."""

from flask import current_app

from fogify_net.controller import Controller


def controller() -> Controller:
    return current_app.config["CONTROLLER"]
