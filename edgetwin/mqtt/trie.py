"""The subscription trie: who receives a PUBLISH, and how (pure: standard library and ``mqtt.topics``).

Contract (MQTT 5.0 ids unless marked 3.1.1; topic syntax and :func:`~edgetwin.mqtt.topics.matches` are
``mqtt.topics``'s, reused here, never re-implemented):

* :class:`SubscriptionTrie` holds every session's subscriptions, keyed by a hashable subscriber key (the
  client id). One node per filter level, a ``dict`` per node; ``+`` and ``#`` are children like any other
  level (a topic name never contains them, MQTT-4.7.1-1, so they cannot clash with a literal).
* :meth:`~SubscriptionTrie.subscribe` validates the filter (:func:`split_shared`) and stores the
  subscription; a second subscription of the same key to the same filter **replaces** the first
  (MQTT-3.8.4-3) and says so in its return value, which is what Retain Handling 1 needs (v5 MQTT-3.3.1-10).
  :meth:`~SubscriptionTrie.unsubscribe` and :meth:`~SubscriptionTrie.remove_key` prune the nodes they
  empty, so memory follows the live subscriptions. A per-key index makes ``remove_key`` cost only that
  key's subscriptions.
* :meth:`~SubscriptionTrie.match` gives, for one topic name, every subscriber key whose **normal**
  subscriptions match, merged into a single :class:`Delivery`: the **maximum** granted QoS of the matching
  subscriptions (MQTT-3.3.4-2; 3.1.1: MQTT-3.3.5-1), **all** their Subscription Identifiers
  (MQTT-3.3.4-3/-4), and Retain As Published if **any** of them has it. Why *any*: one copy goes out, so
  one RETAIN flag; with *all*, a subscription that asked for the published flag (typically a bridge's)
  would silently never see it, while with *any* the cost is that an overlapping subscription without the
  option may see RETAIN=1 on a live message. The caller caps the QoS at the PUBLISH's own
  (MQTT-3.8.4-8; 3.1.1: MQTT-3.8.4-6) and sets RETAIN from ``retain_as_published`` (MQTT-3.3.1-12/-13).
  No Local (MQTT-3.8.3-3) is applied inside ``match`` when it is told the ``publisher``: the publisher's
  No Local subscriptions are left out *before* merging, so they add neither QoS nor identifiers, and its
  other matching subscriptions still deliver.
* ``+`` matches one level, an empty one too; ``#`` matches the parent level and any number of children
  (``sport/#`` matches ``sport``); a filter starting with ``+`` or ``#`` never matches a topic whose first
  level starts with ``$`` (MQTT-4.7.2-1). These are the rules of ``topics.matches``, and the tests check
  ``match`` against it.
* Shared subscriptions ``$share/<ShareName>/<filter>`` (§4.8.2): the ShareName is at least one character
  (MQTT-4.8.2-1) without ``/``, ``+`` or ``#``, then ``/`` and a valid filter (MQTT-4.8.2-2). A shared
  subscription is identified by ShareName *and* filter. For each matching one, ``match`` picks **one**
  member per message, round-robin in joining order (re-subscribing keeps a member's place), optionally
  skipping members the caller says are unavailable. Shared deliveries are reported apart from normal ones
  and are never merged with them: a client in a group and with a normal matching subscription gets both.
  No Local on a shared subscription is a Protocol Error (MQTT-3.8.3-4) and is refused. ``$share/...`` is
  taken as shared whatever the protocol version; refusing it for 3.1.1 clients is the broker's choice.
* :func:`literal_prefix` gives the longest prefix every topic matched by a filter starts with, for the
  retained store's range scan; the scan still filters its candidates with ``topics.matches``
  (:func:`iter_matching_topics`).

Not handled here: packet decoding, authorisation (``topics.TopicPermissions``), capping QoS at the
PUBLISH's, retained messages, sessions, and whether a picked shared member is online (pass ``available``).
``match`` moves the round-robin cursors; apart from that, nothing here has side effects.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from edgetwin.mqtt.topics import TopicError, matches, validate_topic_filter

__all__ = [
    "MAX_SUBSCRIPTION_ID",
    "Delivery",
    "MatchResult",
    "SharedDelivery",
    "SubscriptionOptions",
    "SubscriptionTrie",
    "TrieStatistics",
    "iter_matching_topics",
    "literal_prefix",
    "split_shared",
]

K = TypeVar("K", bound=Hashable)

MAX_SUBSCRIPTION_ID: Final = 268_435_455
"""The largest Subscription Identifier: a four-byte Variable Byte Integer (§3.8.2.1.2; 0 is a Protocol Error)."""

_SHARE_PREFIX: Final = "$share/"
_MULTI: Final = "#"
_SINGLE: Final = "+"
_SEPARATOR: Final = "/"


@dataclass(frozen=True, slots=True)
class SubscriptionOptions:
    """One subscription's options, as granted (§3.8.3.1). The trie stores them and hands them back.

    Attributes:
        qos: the granted maximum QoS, 0 to 2.
        no_local: do not deliver the subscriber's own publications on this subscription (MQTT-3.8.3-3).
        retain_as_published: forward the RETAIN flag as published instead of 0 (MQTT-3.3.1-12/-13).
        retain_handling: 0 send retained on subscribe, 1 only if the subscription is new, 2 never; the
            broker acts on it, the trie only keeps it.
        subscription_id: the v5 Subscription Identifier, 1 to :data:`MAX_SUBSCRIPTION_ID`, or ``None``.

    Raises:
        ValueError: a value is out of range.
    """

    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    subscription_id: int | None = None

    def __post_init__(self) -> None:
        if self.qos not in (0, 1, 2):
            raise ValueError(f"QoS must be 0, 1 or 2, not {self.qos!r}")
        if self.retain_handling not in (0, 1, 2):
            # 3 is a Protocol Error (§3.8.3.1): the codec reports it; this only refuses to store it.
            raise ValueError(f"Retain Handling must be 0, 1 or 2, not {self.retain_handling!r}")
        if self.subscription_id is not None and not 1 <= self.subscription_id <= MAX_SUBSCRIPTION_ID:
            raise ValueError(
                f"a Subscription Identifier must be 1 to {MAX_SUBSCRIPTION_ID}, not {self.subscription_id}"
            )


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one message goes to one subscriber: the merge of its matching subscriptions.

    Attributes:
        qos: the highest granted QoS among them (MQTT-3.3.4-2); the broker sends
            ``min(publish QoS, qos)`` (MQTT-3.8.4-8; 3.1.1: MQTT-3.8.4-6).
        retain_as_published: whether any of them has Retain As Published (the module docstring gives why).
        subscription_ids: the Subscription Identifiers of those that have one (MQTT-3.3.4-3/-4), ascending.
            One per subscription, so an identifier repeats when several matching filters came in one
            SUBSCRIBE, as §3.3.4 says the PUBLISH then carries it.
    """

    qos: int
    retain_as_published: bool
    subscription_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SharedDelivery(Generic[K]):
    """The member picked to receive one message on one shared subscription.

    Attributes:
        topic_filter: the shared subscription, ``$share/<ShareName>/<filter>`` as subscribed.
        key: the picked member.
        delivery: the member's own subscription, as a :class:`Delivery`.
    """

    topic_filter: str
    key: K
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class MatchResult(Generic[K]):
    """Everything :meth:`SubscriptionTrie.match` found for one topic name.

    Attributes:
        normal: per subscriber key, its merged normal subscriptions (a new ``dict``, the caller's to keep).
        shared: one entry per matching shared subscription, each naming the one member picked.
    """

    normal: dict[K, Delivery]
    shared: list[SharedDelivery[K]]

    def __bool__(self) -> bool:
        """Whether anyone receives the message."""
        return bool(self.normal or self.shared)


@dataclass(frozen=True, slots=True)
class TrieStatistics:
    """A snapshot of the trie's size.

    Attributes:
        keys: subscriber keys with at least one subscription.
        subscriptions: subscriptions, normal and shared (one per key and filter).
        shared_subscriptions: distinct shared subscriptions (ShareName and filter) with members.
        nodes: trie nodes besides the root; 0 when there are no subscriptions.
    """

    keys: int
    subscriptions: int
    shared_subscriptions: int
    nodes: int


# The six deliveries without identifiers, shared by every subscription that has no identifier: most of them,
# so most subscriptions cost no Delivery object of their own, and merging them allocates nothing.
_PLAIN: Final = {(qos, rap): Delivery(qos, rap) for qos in (0, 1, 2) for rap in (False, True)}


def _delivery(qos: int, retain_as_published: bool, subscription_ids: tuple[int, ...]) -> Delivery:
    if subscription_ids:
        return Delivery(qos, retain_as_published, subscription_ids)
    return _PLAIN[qos, retain_as_published]


def _merge(a: Delivery, b: Delivery) -> Delivery:
    # MQTT-3.3.4-2/-4 (3.1.1: MQTT-3.3.5-1): one copy at the highest QoS, with every identifier.
    if a.subscription_ids and b.subscription_ids:
        ids = tuple(sorted(a.subscription_ids + b.subscription_ids))
    else:
        ids = a.subscription_ids or b.subscription_ids
    return _delivery(max(a.qos, b.qos), a.retain_as_published or b.retain_as_published, ids)


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """Validate a SUBSCRIBE/UNSUBSCRIBE filter and split off a shared subscription's ShareName.

    Args:
        topic_filter: the filter as the client sent it.

    Returns:
        ``(share_name, filter)``: ``(None, topic_filter)`` for a normal subscription, and for
        ``$share/<ShareName>/<filter>`` the ShareName and the filter that is matched against topics.

    Raises:
        TopicError: the filter is invalid (see ``topics.validate_topic_filter``), or a shared one has an
            empty ShareName (MQTT-4.8.2-1), a ShareName with ``+`` or ``#``, or no filter (MQTT-4.8.2-2).
    """
    if not topic_filter.startswith(_SHARE_PREFIX):
        validate_topic_filter(topic_filter)
        return None, topic_filter
    share_name, separator, inner = topic_filter[len(_SHARE_PREFIX) :].partition(_SEPARATOR)
    if not share_name:
        raise TopicError(
            f"the shared subscription {topic_filter!r} has an empty ShareName", clause="MQTT-4.8.2-1"
        )
    if _SINGLE in share_name or _MULTI in share_name:
        raise TopicError(
            f"the ShareName of {topic_filter!r} must not contain '+' or '#'", clause="MQTT-4.8.2-2"
        )
    if not separator or not inner:
        raise TopicError(
            f"the ShareName of {topic_filter!r} must be followed by '/' and a topic filter",
            clause="MQTT-4.8.2-2",
        )
    # "$share" and the ShareName are literal levels now, so the whole string obeys the wildcard rules exactly
    # when the inner filter does; checking the whole also bounds its length and encoding (MQTT-4.7.3-3).
    validate_topic_filter(topic_filter)
    return share_name, inner


def _split_unchecked(topic_filter: str) -> tuple[str | None, str]:
    # For filters already stored, hence already validated by split_shared.
    if not topic_filter.startswith(_SHARE_PREFIX):
        return None, topic_filter
    share_name, _, inner = topic_filter[len(_SHARE_PREFIX) :].partition(_SEPARATOR)
    return share_name, inner


def literal_prefix(topic_filter: str) -> str:
    """The longest string that every topic name matched by ``topic_filter`` starts with.

    For a range scan over stored topic names (the retained store): scan the keys starting with the prefix's
    UTF-8 encoding (a prefix of a string encodes to a prefix of its encoding), then keep those the filter
    :func:`~edgetwin.mqtt.topics.matches`. ``a/b/+/c`` gives ``a/b/``, ``a/#`` gives ``a`` (``#`` also
    matches the parent level, so not ``a/``), ``+/x`` and ``#`` give ``""``, and a filter without wildcards
    gives itself. Pass a shared subscription's inner filter (:func:`split_shared`), not ``$share/...``.

    Args:
        topic_filter: a valid topic filter; on an invalid one the answer is unspecified, but this never
            raises.

    Returns:
        The prefix.
    """
    single = topic_filter.find(_SINGLE)
    multi = topic_filter.find(_MULTI)
    if single < 0 and multi < 0:
        return topic_filter
    first = min(i for i in (single, multi) if i >= 0)
    if first == multi and first > 0:
        # "a/#" matches "a": drop the separator before "#" too.
        return topic_filter[: first - 1]
    return topic_filter[:first]


def iter_matching_topics(topic_filter: str, topics: Iterable[str]) -> Iterator[str]:
    """The topic names among ``topics`` that ``topic_filter`` matches, in their order.

    Meant for the candidates of a :func:`literal_prefix` range scan.

    Args:
        topic_filter: a valid topic filter (not ``$share/...``).
        topics: valid topic names.

    Returns:
        An iterator over the matching names.
    """
    return (topic for topic in topics if matches(topic_filter, topic))


class _Group(Generic[K]):
    """The members of one shared subscription, in joining order, with the round-robin cursor."""

    __slots__ = ("cursor", "members", "ring")

    def __init__(self) -> None:
        self.members: dict[K, SharedDelivery[K]] = {}
        self.ring: list[K] = []  # joining order; ring[cursor] is picked next
        self.cursor = 0

    def put(self, entry: SharedDelivery[K]) -> None:
        if entry.key not in self.members:
            self.ring.append(entry.key)
        self.members[entry.key] = entry  # a re-subscription keeps its place in the ring (MQTT-3.8.4-3)

    def discard(self, key: K) -> None:
        del self.members[key]
        index = self.ring.index(key)
        del self.ring[index]
        if index < self.cursor:
            self.cursor -= 1  # the member that was next stays next
        if self.cursor >= len(self.ring):
            self.cursor = 0

    def pick(self, available: Callable[[K], bool] | None) -> SharedDelivery[K]:
        ring = self.ring
        size = len(ring)
        start = self.cursor
        chosen = start
        if available is not None:
            for step in range(size):
                index = (start + step) % size
                if available(ring[index]):
                    chosen = index
                    break
        self.cursor = (chosen + 1) % size
        return self.members[ring[chosen]]


class _Node(Generic[K]):
    """One filter level. ``subs`` holds the normal subscriptions ending here, ``groups`` the shared ones."""

    __slots__ = ("children", "groups", "no_local", "subs")

    def __init__(self) -> None:
        self.children: dict[str, _Node[K]] = {}
        self.subs: dict[K, Delivery] = {}
        # Created on first use: most nodes are interior or have no No Local or shared subscription.
        self.no_local: set[K] | None = None
        self.groups: dict[str, _Group[K]] | None = None

    def is_empty(self) -> bool:
        return not (self.children or self.subs or self.groups)


class SubscriptionTrie(Generic[K]):
    """Every session's subscriptions, indexed for routing a PUBLISH (see the module docstring).

    Not thread-safe, and not to be changed while a :class:`MatchResult` is being built (it never is: nothing
    here awaits).
    """

    __slots__ = ("_by_key", "_nodes", "_root", "_shared_count", "_subscription_count")

    def __init__(self) -> None:
        self._root: _Node[K] = _Node()
        # The per-key index: the source of truth for "does it exist", listing and remove_key.
        self._by_key: dict[K, dict[str, SubscriptionOptions]] = {}
        self._subscription_count = 0
        self._shared_count = 0
        self._nodes = 0

    def __len__(self) -> int:
        """The number of subscriptions (one per key and filter)."""
        return self._subscription_count

    def subscribe(self, topic_filter: str, key: K, options: SubscriptionOptions) -> bool:
        """Add the subscription of ``key`` to ``topic_filter``, or replace it (MQTT-3.8.4-3).

        Args:
            topic_filter: the filter as the client sent it, ``$share/<ShareName>/<filter>`` for a shared
                subscription.
            key: the subscriber (client id).
            options: the granted options.

        Returns:
            ``True`` if ``key`` already had a subscription to exactly this filter (it is replaced, keeping
            its place in a shared subscription's round robin); ``False`` if it is new.

        Raises:
            TopicError: the filter is invalid (:func:`split_shared`), or No Local is set on a shared
                subscription (MQTT-3.8.3-4, a Protocol Error). Nothing is changed then.
        """
        share_name, inner = split_shared(topic_filter)
        if share_name is not None and options.no_local:
            raise TopicError(
                f"No Local must not be set on the shared subscription {topic_filter!r}", clause="MQTT-3.8.3-4"
            )
        node = self._root
        for level in inner.split(_SEPARATOR):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
                self._nodes += 1
            node = child
        sid = options.subscription_id
        delivery = _delivery(options.qos, options.retain_as_published, () if sid is None else (sid,))
        if share_name is None:
            node.subs[key] = delivery  # replacing keeps the key's position: match order stays stable
            if options.no_local:
                if node.no_local is None:
                    node.no_local = set()
                node.no_local.add(key)
            elif node.no_local is not None:
                node.no_local.discard(key)
                if not node.no_local:
                    node.no_local = None
        else:
            if node.groups is None:
                node.groups = {}
            group = node.groups.get(share_name)
            if group is None:
                group = node.groups[share_name] = _Group()
                self._shared_count += 1
            group.put(SharedDelivery(topic_filter, key, delivery))
        own = self._by_key.setdefault(key, {})
        existed = topic_filter in own
        own[topic_filter] = options
        if not existed:
            self._subscription_count += 1
        return existed

    def unsubscribe(self, topic_filter: str, key: K) -> bool:
        """Remove the subscription of ``key`` to ``topic_filter``, pruning the nodes left empty.

        Args:
            topic_filter: the filter exactly as subscribed (``$share/...`` included).
            key: the subscriber.

        Returns:
            ``True`` if there was such a subscription (v5 UNSUBACK 0x00, else 0x11 No subscription existed).
        """
        own = self._by_key.get(key)
        if own is None or topic_filter not in own:
            return False  # an invalid filter is never stored, so it lands here too
        del own[topic_filter]
        if not own:
            del self._by_key[key]
        self._remove(topic_filter, key)
        return True

    def remove_key(self, key: K) -> int:
        """Remove every subscription of ``key`` (its session ended), pruning the nodes left empty.

        Costs only that key's subscriptions, whatever the trie's size.

        Args:
            key: the subscriber.

        Returns:
            How many subscriptions were removed.
        """
        own = self._by_key.pop(key, None)
        if own is None:
            return 0
        for topic_filter in own:
            self._remove(topic_filter, key)
        return len(own)

    def subscriptions(self, key: K) -> dict[str, SubscriptionOptions]:
        """The subscriptions of ``key`` (for persisting a session or listing it).

        Args:
            key: the subscriber.

        Returns:
            A new ``dict`` from filter as subscribed to options, in subscription order; empty if none.
        """
        return dict(self._by_key.get(key, {}))

    def keys(self) -> list[K]:
        """The subscriber keys with at least one subscription.

        Returns:
            A new list, in order of first subscription.
        """
        return list(self._by_key)

    def statistics(self) -> TrieStatistics:
        """A snapshot of the sizes (kept as counters: cheap enough for a periodic ``$SYS`` report).

        Returns:
            The statistics.
        """
        return TrieStatistics(
            keys=len(self._by_key),
            subscriptions=self._subscription_count,
            shared_subscriptions=self._shared_count,
            nodes=self._nodes,
        )

    def match(
        self, topic: str, *, publisher: K | None = None, available: Callable[[K], bool] | None = None
    ) -> MatchResult[K]:
        """Who receives a message published to ``topic``, and how.

        Advances the round robin of every matching shared subscription by one pick.

        Args:
            topic: a valid topic name (``topics.validate_topic_name``); for an invalid one the answer is
                unspecified.
            publisher: the publishing client's key, so that its No Local subscriptions are left out
                (MQTT-3.8.3-3); ``None`` for messages with no client behind them (wills are published on
                behalf of a client: pass it).
            available: for shared subscriptions, whether a member can take a message now (e.g. is
                connected). The first available member from the cursor on is picked; if none is, the
                member at the cursor is. ``None`` picks strictly in turn.

        Returns:
            The merged normal deliveries per key and one picked member per matching shared subscription.
        """
        levels = topic.split(_SEPARATOR)
        hits: list[_Node[K]] = []  # nodes whose subscriptions match the topic
        frontier: list[_Node[K]] = []  # nodes matching the levels so far, to be extended by the next level
        children = self._root.children
        first = levels[0]
        if not first.startswith("$"):
            # MQTT-4.7.2-1: a filter starting with a wildcard does not match a topic starting with "$".
            node = children.get(_MULTI)
            if node is not None:
                hits.append(node)
            node = children.get(_SINGLE)
            if node is not None:
                frontier.append(node)
        node = children.get(first)
        if node is not None:
            frontier.append(node)
        for level in levels[1:]:
            if not frontier:
                break
            following: list[_Node[K]] = []
            for parent in frontier:
                children = parent.children
                if not children:
                    continue
                node = children.get(_MULTI)  # "#" matches this level and the rest
                if node is not None:
                    hits.append(node)
                node = children.get(_SINGLE)
                if node is not None:
                    following.append(node)
                node = children.get(level)
                if node is not None:
                    following.append(node)
            frontier = following
        for parent in frontier:
            hits.append(parent)  # the filter ends where the topic does
            node = parent.children.get(_MULTI)  # "sport/#" matches "sport"
            if node is not None:
                hits.append(node)
        return MatchResult(self._merge_normal(hits, publisher), self._pick_shared(hits, available))

    @staticmethod
    def _merge_normal(hits: list[_Node[K]], publisher: K | None) -> dict[K, Delivery]:
        matched = [node for node in hits if node.subs]
        if not matched:
            return {}
        # Merging is commutative: copy the biggest dict (in C), then merge the smaller ones into the copy.
        largest = matched[0] if len(matched) == 1 else max(matched, key=lambda node: len(node.subs))
        normal = largest.subs.copy()
        for node in matched:
            if node is largest:
                continue
            for key, delivery in node.subs.items():
                previous = normal.get(key)
                normal[key] = delivery if previous is None else _merge(previous, delivery)
        if publisher is not None and any(node.no_local and publisher in node.no_local for node in matched):
            # MQTT-3.8.3-3: redo the publisher's merge without its No Local subscriptions.
            own: Delivery | None = None
            for node in matched:
                mine = node.subs.get(publisher)
                if mine is None or (node.no_local is not None and publisher in node.no_local):
                    continue
                own = mine if own is None else _merge(own, mine)
            if own is None:
                del normal[publisher]
            else:
                normal[publisher] = own
        return normal

    @staticmethod
    def _pick_shared(hits: list[_Node[K]], available: Callable[[K], bool] | None) -> list[SharedDelivery[K]]:
        picked: list[SharedDelivery[K]] = []
        for node in hits:
            if node.groups:
                picked.extend(group.pick(available) for group in node.groups.values())
        return picked

    def _remove(self, topic_filter: str, key: K) -> None:
        share_name, inner = _split_unchecked(topic_filter)
        levels = inner.split(_SEPARATOR)
        path = [self._root]
        for level in levels:
            path.append(path[-1].children[level])
        node = path[-1]
        if share_name is None:
            del node.subs[key]
            if node.no_local is not None:
                node.no_local.discard(key)
                if not node.no_local:
                    node.no_local = None
        else:
            assert node.groups is not None  # stored by subscribe
            group = node.groups[share_name]
            group.discard(key)
            if not group.members:
                del node.groups[share_name]
                self._shared_count -= 1
                if not node.groups:
                    node.groups = None
        self._subscription_count -= 1
        # Prune from the leaf up: a node without subscriptions or children serves no filter.
        for depth in range(len(levels), 0, -1):
            if not path[depth].is_empty():
                break
            del path[depth - 1].children[levels[depth - 1]]
            self._nodes -= 1
