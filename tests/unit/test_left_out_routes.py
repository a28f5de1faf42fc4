"""Fogify's routes that fogify-net leaves out on purpose answer a JSON 404 that says why."""

from __future__ import annotations

import pytest

from fogify_net_api import create_app


@pytest.mark.parametrize("method, path", [("get", "/control/controller-properties/"),
                                          ("post", "/control/mec-svc-1|cloud-server/"), ("get", "/control")])
def test_control_routes_are_404_with_the_reason(method, path):
    response = getattr(create_app(controller=None).test_client(), method)(path)
    assert response.status_code == 404
    assert "leaves out Fogify's /control/ routes on purpose" in response.get_json()["message"]


def test_other_unknown_routes_stay_plain_404s():
    response = create_app(controller=None).test_client().get("/no-such-route/")
    assert response.status_code == 404 and "on purpose" not in response.get_json()["message"]
