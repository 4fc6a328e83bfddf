"""Ditto's thing resources, pure: which resource a path names, what a valid value is there, and how a
PUT, a merge or a delete at that path changes a thing.

A *thing* here is the public JSON (``thingId``, ``policyId``, ``definition``, ``attributes``,
``features``); the hidden fields (``_revision``, ``_created``, ``_modified``) are the service's business
and are stripped from inputs. Paths are pointers relative to the thing; the routable shapes are
(ditto.md §1.3)::

    ()                                   thing
    ("policyId",)  ("definition",)       policyId, definition
    ("attributes",) ("attributes", *p)   attributes, attribute
    ("features",) ("features", f)        features, feature
    ("features", f, "definition")        feature definition
    ("features", f, "properties"[, *p])  feature properties / property
    ("features", f, "desiredProperties"[, *p])

Errors carry Ditto's codes: ``things:<resource>.notfound`` (404), ``things:id.notsettable``,
``things:feature.definition.empty``, ``things:definition.identifier.invalid`` ... (400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from edgetwin.errors import InvalidInput, MethodNotAllowed, NotFound
from edgetwin.twin.ids import parse_feature_id, parse_policy_id
from edgetwin.twin.patch import merge_patch, strip_nulls
from edgetwin.twin.pointer import MISSING, Json, Missing, Pointer, check_keys, delete_at, get_at, put_at

__all__ = [
    "THING_KEYS",
    "Resource",
    "apply_delete",
    "apply_merge",
    "apply_put",
    "lift_policy_specials",
    "lookup",
    "not_found",
    "public_view",
    "resource_of",
    "validate_thing",
]

# The keys a thing's JSON may carry (hidden fields and write-side specials are handled elsewhere).
THING_KEYS: Final = ("thingId", "policyId", "definition", "attributes", "features")
FEATURE_KEYS: Final = ("definition", "properties", "desiredProperties")

# Ditto's definition identifier: <namespace>:<name>:<version>, or an http(s) URL (ditto.md §1.2).
_IDENTIFIER: Final = re.compile(r"^([_a-zA-Z0-9\-.]+):([_a-zA-Z0-9\-.]+):([_a-zA-Z0-9\-.]+)$|^https?://\S+$")


@dataclass(frozen=True, slots=True)
class Resource:
    """What a path names.

    ``kind`` is one of ``thing``, ``policyId``, ``definition``, ``attributes``, ``attribute``,
    ``features``, ``feature``, ``featureDefinition``, ``properties``, ``property``,
    ``desiredProperties``, ``desiredProperty``. ``feature_id`` is set below ``features/{f}``; ``key`` is
    the sub-path below attributes / properties / desiredProperties, as text.
    """

    kind: str
    feature_id: str | None = None
    key: str = ""


def resource_of(path: Pointer) -> Resource:
    """Classify ``path``; a shape Ditto does not route is a 404 ``things:resource.notfound``-like error."""
    n = len(path)
    if n == 0:
        return Resource("thing")
    head = path[0]
    if head in ("policyId", "definition") and n == 1:
        return Resource(head)
    if head == "attributes":
        return Resource("attributes") if n == 1 else Resource("attribute", key="/".join(path[1:]))
    if head == "features":
        if n == 1:
            return Resource("features")
        fid = path[1]
        if n == 2:
            return Resource("feature", fid)
        sub = path[2]
        if sub == "definition" and n == 3:
            return Resource("featureDefinition", fid)
        if sub == "properties":
            return Resource("properties", fid) if n == 3 else Resource("property", fid, "/".join(path[3:]))
        if sub == "desiredProperties":
            if n == 3:
                return Resource("desiredProperties", fid)
            return Resource("desiredProperty", fid, "/".join(path[3:]))
    raise NotFound(
        f"The requested resource '/{'/'.join(path)}' does not exist on a Thing.",
        error_code="resource.notfound",
    )


_NOT_FOUND: Final = {
    "definition": (
        "things:definition.notfound",
        "The Definition of the Thing with ID '{t}' could not be found",
    ),
    "attributes": (
        "things:attributes.notfound",
        "The Attributes of the Thing with ID '{t}' could not be found",
    ),
    "attribute": (
        "things:attribute.notfound",
        "The Attribute with key '{k}' on the Thing with ID '{t}' could not be found",
    ),
    "features": ("things:features.notfound", "The Features on the Thing with ID '{t}' could not be found"),
    "feature": (
        "things:feature.notfound",
        "The Feature with ID '{f}' on the Thing with ID '{t}' could not be found",
    ),
    "featureDefinition": (
        "things:feature.definition.notfound",
        "The Definition of the Feature with ID '{f}' on the Thing with ID '{t}' could not be found",
    ),
    "properties": (
        "things:feature.properties.notfound",
        "The Properties of the Feature with ID '{f}' on the Thing with ID '{t}' could not be found",
    ),
    "property": (
        "things:feature.property.notfound",
        "The Property with JSON Pointer '/{k}' of the Feature with ID '{f}' on the Thing with ID '{t}' could not"
        " be found",
    ),
    "desiredProperties": (
        "things:feature.desiredProperties.notfound",
        "The desired Properties of the Feature with ID '{f}' on the Thing with ID '{t}' could not be found",
    ),
    "desiredProperty": (
        "things:feature.desiredProperty.notfound",
        "The desired Property with JSON Pointer '/{k}' of the Feature with ID '{f}' on the Thing with ID '{t}'"
        " could not be found",
    ),
}


def not_found(thing_id: str, path: Pointer) -> NotFound:
    """The 404 Ditto answers when ``path`` does not exist on ``thing_id`` (or the thing itself does not).

    Below a missing feature, Ditto names the feature, not the deeper resource.
    """
    resource = resource_of(path)
    if resource.kind in ("thing", "policyId"):
        return NotFound(
            f"The Thing with ID '{thing_id}' could not be found or requester had insufficient permissions to "
            "access it.",
            description="Check if the ID of your requested Thing was correct and you have sufficient "
            "permissions.",
            error_code="things:thing.notfound",
        )
    code, template = _NOT_FOUND[resource.kind]
    message = template.format(t=thing_id, f=resource.feature_id, k=resource.key)
    return NotFound(
        message + " or requester had insufficient permissions to access it.",
        description="Check if the ID of the Thing and the path were correct and you have sufficient permissions.",
        error_code=code,
    )


def public_view(thing: dict[str, Json]) -> dict[str, Json]:
    """The thing without hidden fields (what a plain GET returns)."""
    return {k: v for k, v in thing.items() if not k.startswith("_")}


def _invalid(message: str, code: str, description: str | None = None) -> InvalidInput:
    return InvalidInput(message, error_code=code, description=description)


def _check_definition(value: Json) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise _invalid(
            f"Definition identifier <{value}> is invalid!",
            "things:definition.identifier.invalid",
            "A Definition must be of the form 'namespace:name:version' or a valid HTTP(s) URL.",
        )


def _check_feature_definition(value: Json) -> None:
    if not isinstance(value, list):
        raise _invalid("The Feature Definition must be a JSON array of identifiers.", "json.format.invalid")
    if not value:
        raise _invalid(
            "Feature Definition must not be empty!",
            "things:feature.definition.empty",
            "A Feature Definition must contain at least one element.",
        )
    for identifier in value:
        if not isinstance(identifier, str) or not _IDENTIFIER.match(identifier):
            raise _invalid(
                f"Definition identifier <{identifier}> is invalid!",
                "things:definition.identifier.invalid",
                "A Definition must be of the form 'namespace:name:version' or a valid HTTP(s) URL.",
            )


def _check_object(value: Json, what: str) -> None:
    if not isinstance(value, dict):
        raise _invalid(f"The {what} must be a JSON object.", "json.format.invalid")


def _check_feature(value: Json) -> None:
    _check_object(value, "Feature")
    assert isinstance(value, dict)
    for key, sub in value.items():
        if key == "definition":
            if sub is not None:
                _check_feature_definition(sub)
        elif key in ("properties", "desiredProperties"):
            _check_object(sub, f"Feature {key}")
        # other members are not part of a feature; Ditto ignores them on parse


def _check_features(value: Json) -> None:
    _check_object(value, "Features")
    assert isinstance(value, dict)
    for fid, feature in value.items():
        parse_feature_id(fid)
        _check_feature(feature)


def validate_thing(thing: dict[str, Json]) -> None:
    """Check the structure of a whole thing (after a PUT or merge was applied).

    Raises:
        InvalidInput: with Ditto's code for the first problem found.
    """
    check_keys(thing)
    policy_id = thing.get("policyId", MISSING)
    if policy_id is not MISSING:
        if not isinstance(policy_id, str):
            raise _invalid("The Policy ID must be a JSON string.", "policies:id.invalid")
        parse_policy_id(policy_id)
    if "definition" in thing:
        _check_definition(thing["definition"])
    if "attributes" in thing:
        _check_object(thing["attributes"], "Attributes")
    if "features" in thing:
        _check_features(thing["features"])


def _validate_at(resource: Resource, value: Json) -> None:
    """Check ``value`` as the new value of ``resource`` (PUT body)."""
    kind = resource.kind
    if kind == "thing":
        _check_object(value, "Thing")
    elif kind == "policyId":
        if not isinstance(value, str):
            raise _invalid("The Policy ID must be a JSON string.", "policies:id.invalid")
        parse_policy_id(value)
    elif kind == "definition":
        _check_definition(value)
    elif kind in ("attributes", "properties", "desiredProperties"):
        _check_object(value, kind)
    elif kind == "features":
        _check_features(value)
    elif kind == "feature":
        parse_feature_id(resource.feature_id or "")
        _check_feature(value)
    elif kind == "featureDefinition":
        _check_feature_definition(value)


def _thing_body(thing_id: str, value: dict[str, Json]) -> dict[str, Json]:
    """The known members of a thing body; a ``thingId`` that differs from the path is refused."""
    body_id = value.get("thingId", MISSING)
    if body_id is not MISSING and body_id != thing_id:
        raise _invalid(
            f"The Thing ID in the request body '{body_id}' is not equal to the Thing ID in the request URI"
            f" '{thing_id}'.",
            "things:id.notsettable",
            "Either delete the Thing ID from the request body or use the same Thing ID as in the request URI.",
        )
    return {k: v for k, v in value.items() if k in THING_KEYS}


def apply_put(
    thing: dict[str, Json] | None, thing_id: str, path: Pointer, value: Json
) -> tuple[dict[str, Json], bool]:
    """The public thing after ``PUT path value``, and whether the resource at ``path`` was created.

    ``thing`` is the current public thing (``None`` if it does not exist; then only ``path == ()``
    can create it). A whole-thing PUT replaces definition, attributes and features and keeps the
    ``policyId`` when the body has none.

    Raises:
        NotFound: the thing, or the feature a deeper path needs, does not exist.
        InvalidInput: the value is not valid for the resource.
    """
    resource = resource_of(path)
    check_keys(value, at_depth=len(path))
    _validate_at(resource, value)
    if resource.kind == "thing":
        assert isinstance(value, dict)
        new = _thing_body(thing_id, value)
        new["thingId"] = thing_id
        if "policyId" not in new and thing is not None and "policyId" in thing:
            new["policyId"] = thing["policyId"]
        validate_thing(new)
        return _ordered(new), thing is None
    if thing is None:
        raise not_found(thing_id, ())
    # Below a feature the feature must exist (ditto.md §1.3: create it first).
    below_feature = resource.feature_id is not None and resource.kind != "feature"
    if below_feature and get_at(thing, ("features", str(resource.feature_id))) is MISSING:
        raise not_found(thing_id, ("features", str(resource.feature_id)))
    created = get_at(thing, path) is MISSING
    updated = put_at(thing, path, value, create_parents=True)
    assert isinstance(updated, dict)
    validate_thing(updated)
    return updated, created


def apply_merge(
    thing: dict[str, Json] | None, thing_id: str, path: Pointer, patch: Json
) -> tuple[dict[str, Json], bool]:
    """The public thing after merging ``patch`` at ``path`` (RFC 7396), and whether the thing was created.

    Only a merge at the root of a missing thing creates it (nulls stripped); a deeper merge on a missing
    thing is a 404.

    Raises:
        NotFound, InvalidInput: as Ditto (``things:merge.invalid``, ``things:id.notdeletable``,
            ``things:policyId.notdeletable``, ``things:id.notsettable``).
    """
    resource = resource_of(path)
    check_keys(patch, at_depth=len(path))
    if resource.kind == "thing":
        if not isinstance(patch, dict):
            raise _invalid(
                "The merge patch of a Thing must be a JSON object.",
                "things:merge.invalid",
                "Send a JSON object as merge patch (RFC 7396).",
            )
        if "thingId" in patch and patch["thingId"] is None:
            raise _invalid("The Thing ID must not be deleted.", "things:id.notdeletable")
        if "policyId" in patch and patch["policyId"] is None:
            raise _invalid("The Policy ID of a Thing must not be deleted.", "things:policyId.notdeletable")
        if "thingId" in patch and patch["thingId"] != thing_id:
            _thing_body(thing_id, patch)  # raises id.notsettable
    elif resource.kind == "policyId" and patch is None:
        raise _invalid("The Policy ID of a Thing must not be deleted.", "things:policyId.notdeletable")
    if thing is None:
        if resource.kind != "thing":
            raise not_found(thing_id, ())
        assert isinstance(patch, dict)
        created = _thing_body(thing_id, strip_nulls(patch))  # type: ignore[arg-type]
        created["thingId"] = thing_id
        validate_thing(created)
        return _ordered(created), True
    current = get_at(thing, path)
    merged = merge_patch(None if current is MISSING else current, patch)
    if resource.kind == "thing":
        assert isinstance(merged, dict)
        new = _thing_body(thing_id, merged)
        new["thingId"] = thing_id
    else:
        _validate_merged(resource, merged)
        new_any = put_at(thing, path, merged, create_parents=True)
        assert isinstance(new_any, dict)
        new = new_any
    validate_thing(new)
    return new, False


def _validate_merged(resource: Resource, value: Json) -> None:
    if value is None and resource.kind in ("definition", "attribute", "property", "desiredProperty"):
        return
    _validate_at(resource, value)


def apply_delete(thing: dict[str, Json], thing_id: str, path: Pointer) -> dict[str, Json]:
    """The public thing after ``DELETE path`` (``path != ()``; deleting the thing is the service's).

    Raises:
        NotFound: nothing at ``path``.
        MethodNotAllowed: ``policyId`` cannot be deleted.
    """
    resource = resource_of(path)
    if resource.kind == "policyId":
        raise MethodNotAllowed(
            "The Policy ID of a Thing cannot be deleted.", error_code="things:policyId.notdeletable"
        )
    if get_at(thing, path) is MISSING:
        raise not_found(thing_id, _deepest_missing(thing, path))
    new = delete_at(thing, path)
    assert isinstance(new, dict)
    return new


def lift_policy_specials(value: dict[str, Json]) -> tuple[dict[str, Json], Json | None, str | None]:
    """Take the write-side specials ``_policy`` and ``_copyPolicyFrom`` out of a thing body (ditto.md §1.6).

    Returns:
        The body without them, the inline policy (or ``None``) and the policy to copy from (or ``None``).

    Raises:
        InvalidInput: ``_copyPolicyFrom`` is not a string.
    """
    if "_policy" not in value and "_copyPolicyFrom" not in value:
        return value, None, None
    rest = dict(value)
    initial_policy = rest.pop("_policy", None)
    copy_from = rest.pop("_copyPolicyFrom", None)
    if copy_from is not None and not isinstance(copy_from, str):
        raise InvalidInput(
            "The value of '_copyPolicyFrom' must be a string.",
            description="Send a policy ID, or '{{ ref:things/<thingId>/policyId }}'.",
            error_code="json.format.invalid",
        )
    return rest, initial_policy, copy_from


def _deepest_missing(thing: dict[str, Json], path: Pointer) -> Pointer:
    """Below a missing feature Ditto reports the feature; otherwise the resource itself."""
    if len(path) > 2 and path[0] == "features" and get_at(thing, path[:2]) is MISSING:
        return path[:2]
    return path


def lookup(thing: dict[str, Json], thing_id: str, path: Pointer) -> Json:
    """The value at ``path``, or Ditto's 404 for that resource."""
    value: Json | Missing = get_at(thing, path)
    if value is MISSING:
        raise not_found(thing_id, _deepest_missing(thing, path))
    return value


def _ordered(thing: dict[str, Json]) -> dict[str, Json]:
    """Members in Ditto's order: thingId, policyId, definition, attributes, features."""
    return {k: thing[k] for k in THING_KEYS if k in thing}
