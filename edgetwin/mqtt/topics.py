"""MQTT topic names, topic filters, matching, and topic permissions (pure: standard library only).

Contract (MQTT 3.1.1 §4.7 numbering; the 5.0 rules are the same, numbered one lower in §4.7.1):

* A **topic name** (what a PUBLISH carries) and a **topic filter** (what a SUBSCRIBE carries) are at least one
  character long (MQTT-4.7.3-1), contain no U+0000 (MQTT-4.7.3-2, MQTT-1.5.3-2), are valid UTF-8, so no
  lone surrogates (MQTT-1.5.3-1), and encode to at most 65535 bytes (MQTT-4.7.3-3). Levels are separated by
  ``/``; empty levels are allowed (``/a``, ``a//b``, ``/`` are valid: a leading or trailing ``/`` makes a
  distinct topic). Nothing is normalised (MQTT-4.7.3-4): matching is by exact string, case-sensitive.
* A topic name contains no wildcard (MQTT-4.7.1-1). In a filter, ``#`` is a whole level and the last one
  (MQTT-4.7.1-2), and ``+`` is a whole level (MQTT-4.7.1-3).
* :func:`matches`: ``+`` matches exactly one level (an empty one too); ``#`` matches the parent level and
  any number of child levels (``sport/#`` matches ``sport``); a filter that *starts* with ``+`` or ``#``
  does not match a topic name whose first level starts with ``$`` (MQTT-4.7.2-1).
* :class:`TopicPermissions` is a compiled list of allowed filters. :meth:`~TopicPermissions.allows` says
  whether a topic name is matched by one of them (for PUBLISH, and for reading one retained value);
  :meth:`~TopicPermissions.allows_filter` says whether **every** topic name a subscription filter can match
  is allowed, so that a subscriber can never receive a message it could not have asked for by name. The
  union of the allowed filters counts: ``a`` plus ``a/+/#`` together allow subscribing ``a/#``. An empty
  list allows nothing (DESIGN "Topic permissions": no list, no access). The permission check is exact, not
  a per-filter approximation; topic names are taken as unbounded in length and level values as drawn from
  an infinite alphabet, which is what makes it exact (a finite alphabet could make ``+`` enumerable).

Not handled here: shared subscriptions (``$share/<group>/<filter>``: the broker strips the prefix before it
asks about the filter), the subscription trie and retained-value lookup, and who gets which permissions
(``api.auth`` turns credentials and DSH token claims into filter lists).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "MAX_TOPIC_BYTES",
    "TopicError",
    "TopicPermissions",
    "is_valid_topic_filter",
    "is_valid_topic_name",
    "matches",
    "validate_topic_filter",
    "validate_topic_name",
]

MAX_TOPIC_BYTES: Final = 65535
"""The longest topic name or filter in UTF-8 bytes: a UTF-8 string's two-byte length prefix (MQTT-4.7.3-3)."""

_MULTI: Final = "#"
_SINGLE: Final = "+"
_SEPARATOR: Final = "/"


class TopicError(ValueError):
    """A topic name or topic filter is not valid.

    Args:
        message: what is wrong, naming the topic.
        clause: the normative statement it breaks (``MQTT-4.7.1-2``).
    """

    def __init__(self, message: str, *, clause: str) -> None:
        super().__init__(f"{message} ({clause})")
        self.clause = clause


def validate_topic_name(topic: str) -> None:
    """Check that ``topic`` may be published to.

    Args:
        topic: the topic name.

    Raises:
        TopicError: it is empty, too long, not valid UTF-8, contains U+0000 or a wildcard.
    """
    _validate_common(topic, "topic name")
    if _SINGLE in topic or _MULTI in topic:
        # MQTT-4.7.1-1: wildcards may be used in topic filters, never within a topic name.
        raise TopicError(f"wildcards are not allowed in the topic name {topic!r}", clause="MQTT-4.7.1-1")


def validate_topic_filter(topic_filter: str) -> None:
    """Check that ``topic_filter`` may be subscribed to.

    Args:
        topic_filter: the topic filter.

    Raises:
        TopicError: it is empty, too long, not valid UTF-8, contains U+0000, or a wildcard is not a whole
            level (or ``#`` is not the last level).
    """
    _validate_common(topic_filter, "topic filter")
    if _SINGLE not in topic_filter and _MULTI not in topic_filter:
        return
    levels = topic_filter.split(_SEPARATOR)
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if _MULTI in level and (level != _MULTI or i != last):
            # MQTT-4.7.1-2: "#" on its own or after a separator, and the last character of the filter.
            raise TopicError(
                f"'#' must be a whole level and the last one in the topic filter {topic_filter!r}",
                clause="MQTT-4.7.1-2",
            )
        if _SINGLE in level and level != _SINGLE:
            # MQTT-4.7.1-3: "+" must occupy an entire level of the filter.
            raise TopicError(
                f"'+' must be a whole level in the topic filter {topic_filter!r}", clause="MQTT-4.7.1-3"
            )


def is_valid_topic_name(topic: str) -> bool:
    """Whether :func:`validate_topic_name` accepts ``topic``."""
    try:
        validate_topic_name(topic)
    except TopicError:
        return False
    return True


def is_valid_topic_filter(topic_filter: str) -> bool:
    """Whether :func:`validate_topic_filter` accepts ``topic_filter``."""
    try:
        validate_topic_filter(topic_filter)
    except TopicError:
        return False
    return True


def _validate_common(value: str, what: str) -> None:
    if not value:
        raise TopicError(f"a {what} must be at least one character long", clause="MQTT-4.7.3-1")
    if "\x00" in value:
        raise TopicError(f"the {what} {value!r} contains U+0000", clause="MQTT-4.7.3-2")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        # A lone surrogate: not representable in well-formed UTF-8.
        raise TopicError(f"the {what} {value!r} is not valid UTF-8", clause="MQTT-1.5.3-1") from None
    if size > MAX_TOPIC_BYTES:
        raise TopicError(
            f"the {what} is {size} bytes long in UTF-8, more than {MAX_TOPIC_BYTES}", clause="MQTT-4.7.3-3"
        )


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic_filter`` matches the topic name ``topic`` (§4.7).

    Both must be valid (see :func:`validate_topic_filter`, :func:`validate_topic_name`); on other input the
    answer is unspecified, but this never raises.

    Args:
        topic_filter: the subscription's topic filter.
        topic: the published topic name.

    Returns:
        ``True`` if a message published to ``topic`` is delivered on ``topic_filter``.
    """
    if _SINGLE not in topic_filter and _MULTI not in topic_filter:
        return topic_filter == topic  # MQTT-4.7.3-4: exact, no normalisation
    return _matches_levels(tuple(topic_filter.split(_SEPARATOR)), topic.split(_SEPARATOR))


def _matches_levels(levels: Sequence[str], topic: Sequence[str]) -> bool:
    # MQTT-4.7.2-1: a filter starting with a wildcard does not match a topic starting with "$".
    if levels[0] in (_SINGLE, _MULTI) and topic[0].startswith("$"):
        return False
    for i, level in enumerate(levels):
        if level == _MULTI:
            return True  # the parent level (i == len(topic)) and any number of children
        if i >= len(topic) or (level != _SINGLE and level != topic[i]):
            return False
    return len(levels) == len(topic)


@dataclass(frozen=True, slots=True)
class TopicPermissions:
    """A compiled set of allowed topic filters (build it with :meth:`compile`).

    Attributes:
        filters: the allowed filters, in the given order, duplicates removed.
    """

    filters: tuple[str, ...]
    _exact: frozenset[str]
    _wild: tuple[tuple[str, ...], ...]
    _all: tuple[tuple[str, ...], ...]

    @classmethod
    def compile(cls, filters: Iterable[str]) -> TopicPermissions:
        """Validate and compile allowed topic filters.

        Args:
            filters: the allowed topic filters; none means nothing is allowed.

        Returns:
            The compiled permissions.

        Raises:
            TopicError: a filter is not a valid topic filter.
        """
        unique = tuple(dict.fromkeys(filters))
        for topic_filter in unique:
            validate_topic_filter(topic_filter)
        exact = frozenset(f for f in unique if _SINGLE not in f and _MULTI not in f)
        split = tuple(tuple(f.split(_SEPARATOR)) for f in unique)
        wild = tuple(levels for f, levels in zip(unique, split, strict=True) if f not in exact)
        return cls(unique, exact, wild, split)

    def __bool__(self) -> bool:
        """Whether anything at all is allowed."""
        return bool(self.filters)

    def allows(self, topic: str) -> bool:
        """Whether an allowed filter matches the topic name ``topic``.

        Args:
            topic: a topic name (publish, or read one retained value); an invalid one is never allowed.

        Returns:
            ``True`` if allowed.
        """
        if topic in self._exact:
            return True  # a valid filter without wildcards is a valid topic name
        if not self._wild or not is_valid_topic_name(topic):
            return False
        levels = topic.split(_SEPARATOR)
        return any(_matches_levels(allowed, levels) for allowed in self._wild)

    def allows_filter(self, topic_filter: str) -> bool:
        """Whether every topic name that ``topic_filter`` can match is allowed.

        Allowed ``a/#`` permits subscribing ``a/+/c`` and ``a/#``; allowed ``a/+`` does not permit ``a/#``
        (which also matches ``a`` and ``a/b/c``); allowed ``#`` does not permit ``$SYS/#`` (MQTT-4.7.2-1:
        ``#`` never matches ``$`` topics). Several allowed filters may together cover a subscription.

        Args:
            topic_filter: the subscription's filter; an invalid one is never allowed.

        Returns:
            ``True`` if allowed.
        """
        if not self.filters or not is_valid_topic_filter(topic_filter):
            return False
        if topic_filter in self._exact:
            return True
        levels = tuple(topic_filter.split(_SEPARATOR))
        candidates = self._all
        if levels[0] not in (_SINGLE, _MULTI) and levels[0].startswith("$"):
            # The subscription only matches "$" topics, which no allowed filter starting with a wildcard
            # matches (MQTT-4.7.2-1). Otherwise the subscription's topics never start with "$" either
            # (its first level is a non-"$" literal, or a wildcard, which skips "$" topics), so the rule
            # never removes a topic from an allowed filter for it below.
            candidates = tuple(a for a in candidates if a[0] not in (_SINGLE, _MULTI))
        return _covered(candidates, levels)


def _covered(allowed: Sequence[tuple[str, ...]], wanted: tuple[str, ...]) -> bool:
    """Whether every topic name matched by ``wanted`` is matched by one of ``allowed``.

    Walks ``wanted`` level by level, keeping the allowed filters that matched every level so far. Why one
    generic value suffices for a ``+``: the allowed filters that match a level whose value is none of their
    literals are exactly those with ``+`` there, and they also match any literal value; so the filters left
    after a generic value are a subset of those left after any specific value, and being covered only gets
    easier with more filters. The same argument, level by level, handles ``#``.
    """
    for k, level in enumerate(wanted):
        if any(len(a) > k and a[k] == _MULTI for a in allowed):
            return True  # an allowed "#" here matches this level's parent and everything below it
        if level == _MULTI:
            # The "#" also matches its parent topic, unless that is "" (wanted "/#"): not a topic name.
            return _covers_rest(allowed, k, parent=not (k == 1 and wanted[0] == ""))
        if level == _SINGLE:
            allowed = [a for a in allowed if len(a) > k and a[k] == _SINGLE]
        else:
            allowed = [a for a in allowed if len(a) > k and a[k] in (level, _SINGLE)]
        if not allowed:
            return False
    k = len(wanted)
    return any(len(a) == k or (len(a) > k and a[k] == _MULTI) for a in allowed)  # the topic ends here


def _covers_rest(allowed: Sequence[tuple[str, ...]], k: int, *, parent: bool = True) -> bool:
    """Whether ``allowed`` (each matching the ``k`` levels before a wanted ``#``, none with ``#`` at ``k``)
    cover everything that ``#`` at level ``k`` matches (``parent``: including the topic of those ``k``
    levels alone, when it is a valid topic name)."""
    # The wanted "#" matches the topic ending here (when there is one: k > 0), and every topic with one or
    # more further levels. With generic values, an allowed filter covers further levels only if its rest is
    # "+" * j (exactly j more levels) or "+" * j + "#" (j or more, j >= 1 since "#" at k returned earlier).
    if k > 0 and parent and not any(len(a) == k for a in allowed):
        return False
    exact: set[int] = set()
    at_least: int | None = None
    for a in allowed:
        rest = a[k:]
        pluses = len(rest) - 1 if rest and rest[-1] == _MULTI else len(rest)
        if any(level != _SINGLE for level in rest[:pluses]):
            continue
        if pluses < len(rest):
            at_least = pluses if at_least is None else min(at_least, pluses)
        elif pluses:
            exact.add(pluses)
    return at_least is not None and all(n in exact for n in range(1, at_least))
