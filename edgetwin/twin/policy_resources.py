"""Ditto's policy resources, pure: which part of a policy a path names, and how a PUT or a delete there
changes the policy.

Paths are relative to the policy (ditto.md §3.1)::

    ()                                          policy
    ("entries",)                                entries
    ("entries", label)                          entry
    ("entries", label, "subjects"[, sid])       subjects / subject
    ("entries", label, "resources"[, key])      resources / resource   (key like "thing:/features/lamp")

A resource key contains slashes; it is one path element here. Values are validated with the
``twin.policy`` parsers, which carry Ditto's error codes. The lock-out rule (someone must keep WRITE on
``policy:/``) is checked by the caller on the resulting policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgetwin.errors import NotFound
from edgetwin.twin.pointer import MISSING, get_at
from edgetwin.twin.policy import (
    parse_entries,
    parse_entry,
    parse_policy,
    parse_resource,
    parse_resources,
    parse_subject,
    parse_subjects,
)

if TYPE_CHECKING:
    from edgetwin.twin.pointer import Json, Pointer

__all__ = ["PolicyResource", "apply_policy_delete", "apply_policy_put", "lookup_policy", "policy_resource_of"]


@dataclass(frozen=True, slots=True)
class PolicyResource:
    """What a policy path names: ``kind`` is ``policy``, ``entries``, ``entry``, ``subjects``, ``subject``,
    ``resources`` or ``resource``; ``label`` and ``key`` (subject id or resource key) where they apply."""

    kind: str
    label: str | None = None
    key: str | None = None


def policy_resource_of(path: Pointer) -> PolicyResource:
    """Classify ``path``; anything else is a 404."""
    n = len(path)
    if n == 0:
        return PolicyResource("policy")
    if path[0] == "entries":
        if n == 1:
            return PolicyResource("entries")
        label = path[1]
        if n == 2:
            return PolicyResource("entry", label)
        if path[2] in ("subjects", "resources"):
            kind = path[2]
            if n == 3:
                return PolicyResource(kind, label)
            if n == 4:
                return PolicyResource(kind[:-1], label, path[3])
    raise NotFound(
        f"The requested resource '/{'/'.join(path)}' does not exist on a Policy.",
        error_code="resource.notfound",
    )


def _not_found(policy_id: str, resource: PolicyResource) -> NotFound:
    suffix = " or requester had insufficient permissions to access it."
    if resource.kind in ("policy", "entries"):
        return NotFound(
            f"The Policy with ID '{policy_id}' could not be found{suffix}",
            description="Check if the ID of your requested Policy was correct and you have sufficient permissions.",
            error_code="policies:policy.notfound",
        )
    if resource.kind in ("entry", "subjects", "resources"):
        return NotFound(
            f"The PolicyEntry with Label '{resource.label}' on the Policy with ID '{policy_id}' could not be"
            f" found{suffix}",
            error_code="policies:entry.notfound",
        )
    if resource.kind == "subject":
        return NotFound(
            f"The Subject with ID '{resource.key}' on the PolicyEntry with Label '{resource.label}' of the Policy"
            f" with ID '{policy_id}' could not be found{suffix}",
            error_code="policies:subject.notfound",
        )
    return NotFound(
        f"The Resource with path '{resource.key}' on the PolicyEntry with Label '{resource.label}' of the Policy"
        f" with ID '{policy_id}' could not be found{suffix}",
        error_code="policies:resource.notfound",
    )


def _entries(policy: dict[str, Json]) -> dict[str, Any]:
    """A copy of the policy's entries (``{}`` when it has none)."""
    entries = policy.get("entries")
    return dict(entries) if isinstance(entries, dict) else {}


def lookup_policy(policy: dict[str, Json], policy_id: str, path: Pointer) -> Json:
    """The value at ``path`` of the (public) policy, or Ditto's 404 for the missing part."""
    resource = policy_resource_of(path)
    if resource.label is not None and get_at(policy, ("entries", resource.label)) is MISSING:
        raise _not_found(policy_id, PolicyResource("entry", resource.label))
    value = get_at(policy, path)
    if value is MISSING:
        raise _not_found(policy_id, resource)
    return value


def apply_policy_put(
    policy: dict[str, Json] | None, policy_id: str, path: Pointer, value: Json
) -> tuple[dict[str, Json], bool]:
    """The public policy after ``PUT path value``, and whether the addressed part was created.

    Raises:
        NotFound: the policy (below the root) or the entry (below an entry) does not exist.
        InvalidInput: the value is not valid there (codes from ``twin.policy``).
    """
    resource = policy_resource_of(path)
    if resource.kind == "policy":
        return parse_policy(value, policy_id=policy_id), policy is None
    if policy is None:
        raise _not_found(policy_id, PolicyResource("policy"))
    entries = _entries(policy)
    created = get_at(policy, path) is MISSING
    if resource.kind == "entries":
        return {**policy, "entries": parse_entries(value)}, False
    label = str(resource.label)
    if resource.kind == "entry":
        entries[label] = parse_entry(label, value)
        return {**policy, "entries": entries}, created
    entry = entries.get(label)
    if not isinstance(entry, dict):
        raise _not_found(policy_id, PolicyResource("entry", label))
    entry = dict(entry)
    if resource.kind == "subjects":
        entry["subjects"] = parse_subjects(value)
    elif resource.kind == "resources":
        entry["resources"] = parse_resources(value)
    elif resource.kind == "subject":
        entry["subjects"] = {**entry.get("subjects", {}), **parse_subject(str(resource.key), value)}
    else:
        entry["resources"] = {**entry.get("resources", {}), **parse_resource(str(resource.key), value)}
    entries[label] = entry
    return {**policy, "entries": entries}, created


def apply_policy_delete(policy: dict[str, Json], policy_id: str, path: Pointer) -> dict[str, Json]:
    """The public policy after ``DELETE path`` (``path`` is an entry, subject or resource).

    Raises:
        NotFound: nothing there.
    """
    resource = policy_resource_of(path)
    lookup_policy(policy, policy_id, path)
    if resource.kind not in ("entry", "subject", "resource"):
        raise _not_found(policy_id, resource)  # only these are deletable below the root (405 at the edge)
    entries = _entries(policy)
    label = str(resource.label)
    if resource.kind == "entry":
        del entries[label]
    else:
        entry = dict(entries[label])
        group = "subjects" if resource.kind == "subject" else "resources"
        entry[group] = {k: v for k, v in entry[group].items() if k != resource.key}
        entries[label] = entry
    return {**policy, "entries": entries}
