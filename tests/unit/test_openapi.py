"""api/openapi.yaml describes exactly the routes the app serves, is valid OpenAPI 3.0, and auth works as it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from fogify_net.model.actions import ACTION_TYPES, ALIASES, parse_action
from fogify_net_api import create_app

SPEC_PATH = Path(__file__).parents[2] / "api" / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
TOKEN = "s3cret-token"


class StandInController:
    """Just enough of a Controller for the app factory and GET /status/: no root, no Docker."""

    status = "idle"
    message = ""

    class capabilities:  # noqa: N801 - reads like the attribute it stands in for
        @staticmethod
        def as_dict() -> dict:
            return {"root": False, "docker": False, "mininet": False, "htb": False, "netem": False,
                    "nft_bridge": False, "nfqueue": False, "physdev": False, "br_netfilter": False,
                    "ovs_kernel": False, "delayd": None, "cgroup": "v1"}

    def report(self) -> dict:
        return {"status": "idle", "message": "", "shaping": {"mechanism": "netem"},
                "instances": [], "networks": [], "warnings": [], "fidelity": "unknown", "fidelity_reasons": []}

    def topology(self) -> dict:
        return {}

    def tasks(self) -> dict:
        return {}


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def served_routes(app) -> dict[str, set[str]]:
    """Flask's url_map as OpenAPI paths -> methods (HEAD/OPTIONS and the static route left out)."""
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    return routes


def documented_routes(spec: dict) -> dict[str, set[str]]:
    return {path: {key for key in item if key in HTTP_METHODS} for path, item in spec["paths"].items()}


def resolve(spec: dict, node: dict) -> dict:
    """Follow local `$ref`s (`#/components/...`) to the object they name."""
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


# --- the description matches the app ---------------------------------------------------------------


def test_every_served_route_and_method_is_documented_and_nothing_else():
    spec = yaml.safe_load(SPEC_PATH.read_text())
    assert documented_routes(spec) == served_routes(create_app(StandInController()))


def test_the_spec_is_valid_openapi_3_0(spec):
    from openapi_spec_validator import OpenAPIV30SpecValidator

    assert spec["openapi"].startswith("3.0.")
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in OpenAPIV30SpecValidator(spec).iter_errors()]
    assert not errors, "\n".join(errors)


def test_path_parameters_are_declared(spec):
    for path, item in spec["paths"].items():
        declared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        for method, operation in ((m, o) for m, o in item.items() if m in HTTP_METHODS):
            names = declared | {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path)), f"{method.upper()} {path}"


def test_every_operation_documents_success_auth_and_json_errors(spec):
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        assert "200" in responses, f"{method.upper()} {path}"
        assert responses.get("401") == {"$ref": "#/components/responses/Unauthorized"}, f"{method.upper()} {path}"
        for code, response in responses.items():
            if code.startswith(("4", "5")):
                response = resolve(spec, response)
                schema = response["content"]["application/json"]["schema"]
                assert "message" in resolve(spec, schema).get("required", []), f"{method.upper()} {path} {code}"


def test_topology_answers_document_the_status_headers(spec):
    for method, codes in (("get", ("200", "500")), ("post", ("200",)), ("delete", ("200",))):
        for code in codes:
            headers = spec["paths"]["/topology/"][method]["responses"][code]["headers"]
            assert set(headers) == {"X-Fogify-Status", "X-Fogify-Message"}, f"{method} {code}"
    states = spec["components"]["headers"]["X-Fogify-Status"]["schema"]["enum"]
    assert set(states) == {"idle", "deploying", "running", "degraded", "undeploying", "error"}


def test_the_bearer_scheme_is_declared_and_optional(spec):
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert spec["security"] == [{"bearerAuth": []}, {}]  # required only when the server has a token


# --- action types and their parameters ------------------------------------------------------------


def action_examples(spec: dict) -> dict[str, dict]:
    body = spec["paths"]["/actions/{action_type}/"]["post"]["requestBody"]["content"]["application/json"]
    return body["examples"]


def test_every_action_type_is_in_the_path_enum(spec):
    parameter = spec["paths"]["/actions/{action_type}/"]["post"]["parameters"][0]
    assert set(parameter["schema"]["enum"]) == ACTION_TYPES | set(ALIASES)


def test_every_action_type_has_an_example_that_the_server_accepts(spec):
    examples = action_examples(spec)
    covered = {name.split(".")[0] for name in examples}
    assert covered == ACTION_TYPES
    for name, example in examples.items():
        kind = name.split(".")[0]
        parse_action(kind, example["value"]["params"])  # raises ModelError naming the field


def params_schema_of(spec: dict, kind: str) -> str:
    """The `*Params` schema whose title names `kind` (titles read `link_down / link_up`)."""
    names = [name for name, schema in spec["components"]["schemas"].items()
             if name.endswith("Params") and kind in schema.get("title", "").split(" / ")]
    assert len(names) == 1, f"{kind}: {names}"
    return names[0]


def test_every_action_example_fits_its_types_params_schema(spec):
    from openapi_schema_validator import OAS30Validator

    for name, example in action_examples(spec).items():
        kind = name.split(".")[0]
        for ref, value in (("ActionRequest", example["value"]),
                           (params_schema_of(spec, kind), example["value"]["params"])):
            schema = {"$ref": f"#/components/schemas/{ref}", "components": spec["components"]}
            errors = [e.message for e in OAS30Validator(schema).iter_errors(value)]
            assert not errors, f"example {name} against {ref}: {errors}"


def test_every_params_schema_is_referenced_by_the_action_request(spec):
    referenced = {ref["$ref"].rsplit("/", 1)[1]
                  for ref in spec["components"]["schemas"]["ActionRequest"]["properties"]["params"]["anyOf"]}
    params = {name for name in spec["components"]["schemas"] if name.endswith("Params")}
    assert referenced == params


# --- the running app: the served description and auth ---------------------------------------------


def test_the_app_serves_this_file_as_yaml():
    client = create_app(StandInController()).test_client()
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert response.get_data(as_text=True) == SPEC_PATH.read_text()


def test_without_a_token_no_authorization_is_needed(spec):
    client = create_app(StandInController()).test_client()
    response = client.get("/status/")
    assert response.status_code == 200
    assert response.get_json()["status"] == "idle"


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x", "Bearer "])
def test_with_a_token_requests_without_the_right_bearer_are_401_json(header):
    client = create_app(StandInController(), token=TOKEN).test_client()
    headers = {"Authorization": header} if header is not None else {}
    for method, path in (("get", "/status/"), ("get", "/topology/"), ("post", "/actions/network/"),
                         ("delete", "/topology/"), ("get", "/openapi.yaml"), ("get", "/no-such-route/")):
        response = getattr(client, method)(path, headers=headers)
        assert response.status_code == 401, (method, path, header)
        assert response.is_json
        assert "Bearer" in response.get_json()["message"]


def test_with_a_token_the_right_bearer_passes(spec):
    from openapi_schema_validator import OAS30Validator

    client = create_app(StandInController(), token=TOKEN).test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = client.get("/status/", headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    schema = {"$ref": "#/components/schemas/Status", "components": spec["components"]}
    assert not [e.message for e in OAS30Validator(schema).iter_errors(body)]
    topology = client.get("/topology/", headers=headers)
    assert topology.status_code == 200 and topology.get_json() == {}
    assert topology.headers["X-Fogify-Status"] == "idle"
    assert client.get("/no-such-route/", headers=headers).status_code == 404


# --- fidelity: the monitor's answers fit the documented schemas ---------------------------------------


def validate(spec: dict, name: str, value) -> list[str]:
    from openapi_schema_validator import OAS30Validator

    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in OAS30Validator(schema).iter_errors(value)]


def test_the_documented_checks_and_thresholds_are_the_monitors(spec):
    from fogify_net.monitoring.fidelity import CHECKS, Thresholds

    schemas = spec["components"]["schemas"]
    assert set(schemas["FidelityEpisode"]["properties"]["check"]["enum"]) == set(CHECKS)
    assert set(schemas["FidelityThresholds"]["properties"]) == set(Thresholds().as_dict())


def test_the_fidelity_answer_and_the_marked_records_fit_their_schemas(spec, tmp_path):
    from fogify_net.controller import Controller
    from fogify_net.monitoring.fidelity import FidelityMonitor, SamplerHealth
    from fogify_net.monitoring.store import MetricStore

    class Deployed(StandInController):
        emulation = object()  # anything: a deployment is there
        fidelity = FidelityMonitor()
        store = MetricStore(tmp_path / "metrics.db")
        fidelity_report = Controller.fidelity_report

    c = Deployed()
    ts = 1_700_000_000.0
    c.store.add_round(ts, {"n.1": {"cpu": 1e9, "fidelity": 1.0}, "n.2": {"cpu": 2e9}})
    verdict = c.fidelity.observe(ts + 1, None, SamplerHealth(1.0, 0, 0.9), [])  # a round started 0.9 s late
    assert verdict.state == "degraded" and len(verdict.started) == 1
    for episode in verdict.started:
        c.store.add_episode(episode.as_dict())
    c.store.add_round(ts + 1, {"n.1": {"cpu": 1.1e9, "fidelity": 1.0}})
    c.store.mark_degraded(["n.1"], ts + 1)

    client = create_app(c).test_client()
    answer = client.get("/fidelity/").get_json()
    assert answer["fidelity"] == "degraded" and [e["check"] for e in answer["episodes"]] == ["sampler"]
    assert not validate(spec, "FidelityReport", answer)
    assert client.get("/fidelity/?from_timestamp=later").status_code == 400

    records = client.get("/monitorings/").get_json()
    assert [r.get("fidelity") for r in records["n.1"]] == [1.0, 0.0]
    assert "fidelity" not in records["n.2"][0]  # a round before any verdict has no mark
    for rows in records.values():
        for record in rows:
            assert not validate(spec, "MetricRecord", record), record
    c.store.close()
