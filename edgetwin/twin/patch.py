"""JSON merge patch (RFC 7396) with Ditto's regex-deletion extension.

Contract:

* :func:`merge_patch` is RFC 7396 §2 ``MergePatch(Target, Patch)``: an object patch merges member by member,
  ``null`` deletes a member, anything else (arrays included) replaces the target wholesale. It is idempotent:
  applying the same patch twice gives the result of applying it once.
* Ditto extension (ditto.md 1.3, Ditto ``JsonMergePatch``): a patch member named ``"{{ ~<regex>~ }}"`` with
  the value ``null`` first deletes every member of the target object at that level whose key the regex matches
  in full (Java ``Matcher.matches``), except members the patch itself names; then the rest of the patch
  applies. Such a key with a non-null value is an ordinary key. Regexes run on Python's ``re``: an adversarial
  regex can backtrack for a long time, which is why only callers with WRITE permission get here.
* Pure: inputs are never mutated. The result shares unchanged sub-trees with the target and non-object values
  with the patch.
* Recursion follows the patch's nesting, which is bounded by :data:`~edgetwin.twin.pointer.MAX_JSON_DEPTH`.

Not handled here: Ditto's PATCH preconditions (``null`` root body → ``things:merge.invalid``,
``thingId: null`` → ``things:id.notdeletable`` ...), policy checks on the patch's leaves, and the store.
"""

from __future__ import annotations

import re
from typing import Final

from edgetwin.errors import InvalidInput
from edgetwin.twin.pointer import MISSING, Json, Missing, _check_depth, json_equal

__all__ = ["diff_merge_patch", "merge_patch", "strip_nulls"]

_REGEX_KEY: Final = re.compile(r"\{\{\s*~(.*)~\s*\}\}", re.DOTALL)


def merge_patch(target: Json, patch: Json) -> Json:
    """Apply a JSON merge patch (RFC 7396 §2) plus Ditto's ``{{ ~regex~ }}`` deletions.

    Args:
        target: the current value (any JSON value; a non-object is replaced by an object patch).
        patch: the merge patch.

    Returns:
        The patched value. A non-object patch is returned as is (``null`` included: refusing a ``null`` root
        patch is the caller's job).

    Raises:
        InvalidInput: ``json.invalid`` if a ``{{ ~regex~ }}`` key holds an invalid regular expression, or the
            patch nests deeper than :data:`~edgetwin.twin.pointer.MAX_JSON_DEPTH`.
    """
    return _merge(target, patch, 1)


def strip_nulls(value: Json) -> Json:
    """Drop ``null`` members from objects, recursively, as a root PATCH that creates a thing does.

    This is RFC 7396 ``MergePatch({}, value)`` for an object; arrays are values, so ``null`` inside an array
    stays. A non-object ``value`` is returned unchanged.

    Args:
        value: the patch body.

    Returns:
        The value without ``null`` members (and without ``{{ ~regex~ }}`` deletion keys, which are ``null``).

    Raises:
        InvalidInput: as :func:`merge_patch`.
    """
    if not isinstance(value, dict):
        return value
    return _merge({}, value, 1)


def diff_merge_patch(old: Json, new: Json) -> Json | Missing:
    """Compute the smallest merge patch that turns ``old`` into ``new`` (Ditto ``JsonMergePatch.compute``).

    Args:
        old: the value before.
        new: the value after.

    Returns:
        A patch ``p`` with ``merge_patch(old, p) == new``, or :data:`~edgetwin.twin.pointer.MISSING` if the
        values are already equal. Members only ``old`` has become ``null``. A merge patch cannot write a
        ``null`` member, so a ``null`` member of ``new`` comes out deleted instead.

    Raises:
        InvalidInput: ``json.invalid`` if the values nest deeper than
            :data:`~edgetwin.twin.pointer.MAX_JSON_DEPTH`.
    """
    return _diff(old, new, 1)


def _merge(target: Json, patch: Json, depth: int) -> Json:
    if not isinstance(patch, dict):
        return patch  # RFC 7396 §2: "else: return Patch"
    _check_depth(depth)
    # RFC 7396 §2: "if Target is not an Object: Target = {}".
    result: dict[str, Json] = dict(target) if isinstance(target, dict) else {}
    for pattern in _deletion_patterns(patch):
        for key in [key for key in result if key not in patch and pattern.fullmatch(key)]:
            del result[key]
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)  # RFC 7396 §2: "if Value is null: remove Name from Target"
        else:
            result[key] = _merge(result.get(key), value, depth + 1)
    return result


def _deletion_patterns(patch: dict[str, Json]) -> list[re.Pattern[str]]:
    patterns = []
    for key, value in patch.items():
        if value is not None or not key.startswith("{{"):
            continue
        match = _REGEX_KEY.fullmatch(key)
        if match is None:
            continue
        try:
            patterns.append(re.compile(match.group(1)))
        except re.error as err:
            raise InvalidInput(
                f"The regular expression in the merge patch key '{key}' is invalid: {err}.",
                description="Fix the regular expression between the two '~' of the '{{ ~<regex>~ }}' key.",
                error_code="json.invalid",
            ) from err
    return patterns


def _diff(old: Json, new: Json, depth: int) -> Json | Missing:
    if json_equal(old, new):
        return MISSING
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return strip_nulls(new) if isinstance(new, dict) else new
    _check_depth(depth)
    patch: dict[str, Json] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            if value is not None:
                patch[key] = strip_nulls(value)
            continue
        change = _diff(old[key], value, depth + 1)
        if change is not MISSING:
            patch[key] = change
    return patch if patch else MISSING
