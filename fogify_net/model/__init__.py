"""The x-fogify model: parsing and validation, pure."""

from .builder import ModelBuilder
from .errors import ModelError
from .parse import load_model, parse_model, parse_model_text
from .schema import (
    Attachment,
    Blueprint,
    FirewallRule,
    LinkRule,
    Model,
    Network,
    NodeProfile,
    QoS,
    QoSPatch,
    Route,
    Scenario,
    ScenarioAction,
    Service,
    SwitchLink,
    Volume,
)

__all__ = [
    "Attachment", "Blueprint", "FirewallRule", "LinkRule", "Model", "ModelBuilder", "ModelError", "Network",
    "NodeProfile", "QoS", "QoSPatch", "Route", "Scenario", "ScenarioAction", "Service", "SwitchLink", "Volume",
    "load_model", "parse_model", "parse_model_text",
]
