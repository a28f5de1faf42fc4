"""FogifySDK: the Python client of fogify-net (and of Fogify's REST API).

    from FogifySDK import FogifySDK, ExceptionFogifySDK
"""

from ._deployment import instance_names
from ._errors import FidelityWarning
from .FogifySDK import Action_type, ExceptionFogifySDK, FogifySDK

__all__ = ["Action_type", "ExceptionFogifySDK", "FidelityWarning", "FogifySDK", "instance_names"]
__version__ = "0.1.0"
