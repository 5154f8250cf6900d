"""What both flows ask of a webhook's JSON body before anything else reads it (no Chalice import: the
operator CLI reads Rokt's envelope too)."""

from __future__ import annotations

from typing import Any

# A webhook body (Braze's or Rokt's) nests a few levels; anything deeper than this is refused at the
# door, so no later step (serialising an upstream body, queuing, logging) meets it.
MAX_NESTING = 32


def nesting_depth(document: Any) -> int:
    """How deeply ``document``'s objects and arrays nest (iteratively: no recursion on hostile input)."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest
