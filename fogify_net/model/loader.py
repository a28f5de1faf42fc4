"""The one reader of model text: YAML with bounds, so a small document cannot expand into a huge one.

PyYAML shares the object an alias points to, so a 2 KB "billion laughs"
document (anchors of lists of aliases of anchors ...) loads in a moment; it
explodes later, in whatever walks it (a validator, `str()` of a value, an
error message that repeats the value). So the composer here counts every
node as it will be walked, an alias as the whole subtree it repeats, and
refuses a document past MAX_NODES such nodes or MAX_DEPTH levels of nesting,
or one whose alias points into its own anchor (a cycle), before anything
walks it. Every model, from a file, the API or the CLI, is read here.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, SequenceNode

from .errors import ModelError

MAX_NODES = 100_000  # values, keys and items of the document with its aliases expanded; a big model has ~20,000
MAX_DEPTH = 64  # levels of nesting; a compose file has about 8


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer measures the expanded size of what it builds (see the module's docstring)."""

    def __init__(self, stream: str, max_nodes: int, max_depth: int):
        super().__init__(stream)
        self._max_nodes = max_nodes
        self._max_depth = max_depth
        self._sizes: dict[int, int] = {}  # id(node) -> its size with aliases expanded, once composed
        self._depth = 0
        self._composed = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        alias = self.check_event(yaml.AliasEvent)
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > self._max_depth:
            raise ModelError("", f"the document nests deeper than {self._max_depth} levels (line {mark.line + 1})")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        size = self._sizes.get(id(node))
        if alias:
            if size is None:
                raise ModelError("", f"the alias on line {mark.line + 1} refers to its own anchor (a cycle)")
        else:
            self._composed += 1
            if isinstance(node, SequenceNode):
                size = 1 + sum(self._sizes[id(child)] for child in node.value)
            elif isinstance(node, MappingNode):
                size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
            else:
                size = 1
            self._sizes[id(node)] = size
        if size > self._max_nodes or self._composed > self._max_nodes:
            raise ModelError("", f"the document has more than {self._max_nodes:,} values once its aliases are "
                                 f"expanded (line {mark.line + 1}); is it an alias bomb?")
        return node


def load_yaml(text: str, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """The Python objects of a YAML document, or ModelError for invalid, oversized or too deep text."""
    loader = _BoundedLoader(text, max_nodes, max_depth)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as error:
        raise ModelError("", f"not valid YAML: {error}") from None
    except RecursionError:  # a nesting the depth bound did not see (a key inside a key ...)
        raise ModelError("", "the document nests too deeply") from None
    finally:
        loader.dispose()
