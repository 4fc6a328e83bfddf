"""Policy enforcement for the core service: who may read or change what, decided once and cached.

An :class:`~edgetwin.twin.policy.Enforcer` is compiled from a policy's entries for one set of subjects
(and the thing's namespace). Compiling costs more than deciding, so enforcers are cached, keyed by the
entries' canonical bytes (``store.policies.get_policy_entries``: a changed policy has other bytes, so a
cached decision can never be stale, and identical default policies share one enforcer) plus subjects and
namespace, in a bounded LRU. Policies with expiring subjects are not cached, because their decisions
change with the clock.

The rules (ditto.md §1.3, §1.9, §3.3): reads need partial READ and are filtered to the readable leaves;
something not readable at all is a 404, never a 403 (existence is not revealed); writes need unrestricted
WRITE and are refused with 403 and the resource's ``...notmodifiable`` code; conditions may only reference
readable fields (else 412).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Final

import orjson

from edgetwin.errors import PolicyDenied, PreconditionFailed
from edgetwin.twin.policy import Enforcer
from edgetwin.twin.things import resource_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from edgetwin.twin.pointer import Pointer

__all__ = ["EnforcerCache", "condition_unreadable", "not_modifiable"]

# Subjects' own hidden fields are always readable when selected (ditto.md §3.3 step 4).
ALWAYS_READABLE: Final = frozenset(
    {"thingId", "_namespace", "_revision", "_modified", "_created", "policyId"}
)

_WHAT: Final = {
    "thing": ("things:thing.notmodifiable", "The Thing with ID '{t}'"),
    "policyId": ("things:policyId.notmodifiable", "The Policy ID of the Thing with ID '{t}'"),
    "definition": ("things:definition.notmodifiable", "The Definition of the Thing with ID '{t}'"),
    "attributes": ("things:attributes.notmodifiable", "The Attributes of the Thing with ID '{t}'"),
    "attribute": (
        "things:attribute.notmodifiable",
        "The Attribute with key '{k}' of the Thing with ID '{t}'",
    ),
    "features": ("things:features.notmodifiable", "The Features of the Thing with ID '{t}'"),
    "feature": ("things:feature.notmodifiable", "The Feature with ID '{f}' of the Thing with ID '{t}'"),
    "featureDefinition": (
        "things:feature.definition.notmodifiable",
        "The Definition of the Feature with ID '{f}' of the Thing with ID '{t}'",
    ),
    "properties": (
        "things:feature.properties.notmodifiable",
        "The Properties of the Feature with ID '{f}' of the Thing with ID '{t}'",
    ),
    "property": (
        "things:feature.property.notmodifiable",
        "The Property with JSON Pointer '/{k}' of the Feature with ID '{f}' of the Thing with ID '{t}'",
    ),
    "desiredProperties": (
        "things:feature.desiredProperties.notmodifiable",
        "The desired Properties of the Feature with ID '{f}' of the Thing with ID '{t}'",
    ),
    "desiredProperty": (
        "things:feature.desiredProperty.notmodifiable",
        "The desired Property with JSON Pointer '/{k}' of the Feature with ID '{f}' of the Thing with ID '{t}'",
    ),
}


def not_modifiable(thing_id: str, path: Pointer, *, delete: bool = False) -> PolicyDenied:
    """The 403 Ditto answers for a write without WRITE permission on ``path``."""
    resource = resource_of(path)
    if delete and resource.kind == "thing":
        return PolicyDenied(
            f"The Thing with ID '{thing_id}' could not be deleted as the requester had insufficient permissions"
            " to delete it.",
            description="Check if the ID of the Thing was correct and you have sufficient permissions.",
            error_code="things:thing.notdeletable",
        )
    code, what = _WHAT[resource.kind]
    return PolicyDenied(
        what.format(t=thing_id, f=resource.feature_id, k=resource.key)
        + " could not be modified as the requester had insufficient permissions to modify it.",
        description="Check if the ID of the Thing and the path were correct and you have sufficient permissions.",
        error_code=code,
    )


def condition_unreadable(what: str = "condition") -> PreconditionFailed:
    """The 412 for a condition that references fields the caller may not read (ditto.md §1.9, §1.10)."""
    return PreconditionFailed(
        f"The specified resource in the {what} could not be found or the requester had insufficient"
        " permissions to access it.",
        description="Check if the condition is correct and you have sufficient permissions.",
        error_code="things:condition.failed",
    )


class EnforcerCache:
    """A bounded LRU of compiled enforcers.

    Args:
        size: how many (policy, subjects, namespace) combinations to keep.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._cache: OrderedDict[tuple[bytes, tuple[str, ...], str | None], Enforcer] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(
        self,
        raw_entries: bytes | None,
        subjects: Iterable[str],
        namespace: str | None,
        now: str | Callable[[], str],
    ) -> Enforcer | None:
        """The enforcer for ``subjects`` under the policy entries ``raw_entries`` (``None``: no policy).

        ``now`` may be a function: the clock is read only when an enforcer has to be compiled (a hit, the
        common case, does not pay for formatting a timestamp).
        """
        if raw_entries is None:
            return None
        key = (raw_entries, tuple(subjects), namespace)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.hits += 1
            return cached
        self.misses += 1
        at = now if isinstance(now, str) else now()
        enforcer = Enforcer.build({"entries": orjson.loads(raw_entries)}, key[1], namespace=namespace, now=at)
        if b'"expiry"' not in raw_entries:  # time-dependent decisions are not cached
            self._cache[key] = enforcer
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return enforcer
