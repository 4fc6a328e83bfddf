"""The subscription trie: subscribe/replace/unsubscribe/remove_key, merged deliveries, No Local, shared
subscriptions, pruning, and literal_prefix; with ``match`` checked against a brute-force oracle built from
``topics.matches`` and the state against a plain dict model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.mqtt import trie as trie_module
from edgetwin.mqtt.topics import TopicError, matches
from edgetwin.mqtt.trie import (
    MAX_SUBSCRIPTION_ID,
    Delivery,
    SharedDelivery,
    SubscriptionOptions,
    SubscriptionTrie,
    TrieStatistics,
    iter_matching_topics,
    literal_prefix,
    split_shared,
)

Q0 = SubscriptionOptions(qos=0)
Q1 = SubscriptionOptions(qos=1)
Q2 = SubscriptionOptions(qos=2)


def _trie(*subscriptions: tuple[str, str, SubscriptionOptions]) -> SubscriptionTrie[str]:
    trie = SubscriptionTrie[str]()
    for topic_filter, key, options in subscriptions:
        trie.subscribe(topic_filter, key, options)
    return trie


def _count_nodes(trie: SubscriptionTrie[Any]) -> int:
    """Walk the real structure, so that the node counter and the pruning are both checked."""
    stack = list(trie._root.children.values())
    count = 0
    while stack:
        node = stack.pop()
        count += 1
        assert not node.is_empty(), "an empty node was left behind"
        stack.extend(node.children.values())
    return count


def test_exported_names_are_pinned() -> None:
    assert sorted(trie_module.__all__) == sorted(
        [
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
    )


# --- options --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"qos": 3},
        {"qos": -1},
        {"retain_handling": 3},
        {"subscription_id": 0},  # §3.8.2.1.2: 0 is a Protocol Error
        {"subscription_id": MAX_SUBSCRIPTION_ID + 1},
    ],
)
def test_options_out_of_range_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must be"):
        SubscriptionOptions(**kwargs)


def test_options_defaults_are_3_1_1_behaviour() -> None:
    options = SubscriptionOptions(subscription_id=MAX_SUBSCRIPTION_ID)
    assert (options.qos, options.no_local, options.retain_as_published, options.retain_handling) == (
        0,
        False,
        False,
        0,
    )


# --- subscribe / unsubscribe / remove_key ---------------------------------------------------------------


def test_subscribe_again_replaces_and_reports_it_mqtt_3_8_4_3() -> None:
    trie = SubscriptionTrie[str]()
    assert trie.subscribe("a/+", "c1", Q2) is False
    assert trie.match("a/b").normal == {"c1": Delivery(2, False)}
    # MQTT-3.8.4-3: the same filter again replaces the subscription (Retain Handling 1 needs the answer).
    replacement = SubscriptionOptions(qos=0, retain_as_published=True, subscription_id=7)
    assert trie.subscribe("a/+", "c1", replacement) is True
    assert trie.match("a/b").normal == {"c1": Delivery(0, True, (7,))}
    assert trie.subscriptions("c1") == {"a/+": replacement}
    assert len(trie) == 1
    # Another key, or another filter, is a new subscription.
    assert trie.subscribe("a/+", "c2", Q1) is False
    assert trie.subscribe("a/#", "c1", Q1) is False
    assert len(trie) == 3


def test_unsubscribe_reports_whether_it_existed() -> None:
    trie = _trie(("a/b", "c1", Q1), ("a/b", "c2", Q1))
    assert trie.unsubscribe("a/b", "c1") is True
    assert trie.unsubscribe("a/b", "c1") is False  # v5 UNSUBACK 0x11
    assert trie.unsubscribe("a/c", "c2") is False
    assert trie.unsubscribe("a/b#", "c2") is False  # an invalid filter was never stored
    assert trie.unsubscribe("a/b", "nobody") is False
    assert trie.match("a/b").normal == {"c2": Delivery(1, False)}
    assert trie.keys() == ["c2"]


@pytest.mark.parametrize(
    ("topic_filter", "clause"),
    [
        ("", "MQTT-4.7.3-1"),
        ("a/b#", "MQTT-4.7.1-2"),
        ("a/#/b", "MQTT-4.7.1-2"),
        ("a+/b", "MQTT-4.7.1-3"),
        ("a\x00", "MQTT-4.7.3-2"),
        ("$share/g/a/b#", "MQTT-4.7.1-2"),  # the filter inside a shared subscription is checked too
    ],
)
def test_invalid_filters_are_refused_and_change_nothing(topic_filter: str, clause: str) -> None:
    trie = SubscriptionTrie[str]()
    with pytest.raises(TopicError) as info:
        trie.subscribe(topic_filter, "c1", Q1)
    assert info.value.clause == clause
    assert trie.statistics() == TrieStatistics(keys=0, subscriptions=0, shared_subscriptions=0, nodes=0)


def test_remove_key_drops_every_subscription_of_that_key_only() -> None:
    trie = _trie(
        ("a/b", "c1", Q1),
        ("a/#", "c1", Q2),
        ("$share/g/a/b", "c1", Q1),
        ("a/b", "c2", Q0),
        ("$share/g/a/b", "c2", Q0),
    )
    assert trie.remove_key("c1") == 3
    assert trie.remove_key("c1") == 0
    assert trie.subscriptions("c1") == {}
    result = trie.match("a/b")
    assert result.normal == {"c2": Delivery(0, False)}
    assert [(s.topic_filter, s.key) for s in result.shared] == [("$share/g/a/b", "c2")]
    assert trie.statistics() == TrieStatistics(keys=1, subscriptions=2, shared_subscriptions=1, nodes=2)


def test_the_trie_is_empty_after_everyone_leaves() -> None:
    """Nodes created on subscribe are pruned on unsubscribe and remove_key (memory follows subscriptions)."""
    trie = _trie(
        ("a/b/c", "c1", Q1),
        ("a/b", "c1", Q1),
        ("a/+/c/#", "c2", SubscriptionOptions(qos=1, no_local=True)),
        ("#", "c3", Q0),
        ("/", "c3", Q0),
        ("$share/g/a/b/c", "c2", Q1),
        ("$share/h/a/b/c", "c3", Q1),
    )
    assert _count_nodes(trie) == trie.statistics().nodes == 9
    assert trie.unsubscribe("a/b/c", "c1")
    assert _count_nodes(trie) == trie.statistics().nodes == 9  # a/b/c is still used by the shared ones
    trie.remove_key("c2")
    assert _count_nodes(trie) == trie.statistics().nodes == 6  # a/+, a/+/c and a/+/c/# went
    trie.remove_key("c3")
    trie.remove_key("c1")
    assert trie.statistics() == TrieStatistics(keys=0, subscriptions=0, shared_subscriptions=0, nodes=0)
    assert trie._root.is_empty()
    assert not trie.match("a/b/c")


def test_subscriptions_and_keys_are_copies() -> None:
    trie = _trie(("a", "c1", Q1))
    trie.subscriptions("c1").clear()
    trie.keys().clear()
    assert trie.subscriptions("c1") == {"a": Q1}
    assert trie.keys() == ["c1"]


# --- matching rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("sport/tennis/player1/#", "sport/tennis/player1", True),  # "#" matches the parent level
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
        ("sport/#", "sport", True),
        ("sport/#", "sports", False),
        ("#", "a/b/c", True),
        ("#", "/", True),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),  # "+" matches an empty level
        ("+/+", "/finance", True),
        ("+", "/finance", False),
        ("+/#", "a", True),
        ("//#", "//", True),
        ("#", "$SYS/uptime", False),  # MQTT-4.7.2-1
        ("#", "$SYS", False),  # MQTT-4.7.2-1
        ("+/uptime", "$SYS/uptime", False),  # MQTT-4.7.2-1
        ("+/#", "$SYS", False),  # MQTT-4.7.2-1
        ("$SYS/#", "$SYS/uptime", True),
        ("$SYS/#", "$SYS", True),
        ("$SYS/+", "$SYS/uptime", True),
        ("a/+", "a/$x", True),  # the "$" rule is about the first level only
        ("a/#", "a/$x", True),
        ("A", "a", False),  # MQTT-4.7.3-4: case-sensitive
        ("a/b", "a/b/", False),
    ],
)
def test_match_examples(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected  # the oracle agrees with the table
    trie = _trie((topic_filter, "c1", Q1), (f"$share/g/{topic_filter}", "c2", Q1))
    result = trie.match(topic)
    assert ("c1" in result.normal) is expected
    assert ([s.key for s in result.shared] == ["c2"]) is expected


def test_overlapping_subscriptions_deliver_once_at_the_highest_qos_mqtt_3_3_5_1() -> None:
    # 3.1.1 MQTT-3.3.5-1, v5 MQTT-3.3.4-2: one copy, at the maximum granted QoS of the matching ones.
    trie = _trie(("a/+", "c1", Q1), ("a/#", "c1", Q2), ("#", "c1", Q0), ("a/c", "c1", Q0))
    assert trie.match("a/b").normal == {"c1": Delivery(2, False)}


def test_one_delivery_carries_all_matching_subscription_ids_mqtt_3_3_4_3() -> None:
    # MQTT-3.3.4-3/-4: every matching subscription's identifier, order not significant (ascending here);
    # identifiers repeat when one SUBSCRIBE (one identifier) had several matching filters (§3.3.4).
    trie = _trie(
        ("a/+", "c1", SubscriptionOptions(qos=0, subscription_id=9)),
        ("a/#", "c1", SubscriptionOptions(qos=1, subscription_id=3)),
        ("+/b", "c1", SubscriptionOptions(qos=0, subscription_id=3)),
        ("a/b", "c1", SubscriptionOptions(qos=0)),  # without an identifier: adds none
        ("a/b", "c2", SubscriptionOptions(qos=1, subscription_id=5)),
    )
    assert trie.match("a/b").normal == {"c1": Delivery(1, False, (3, 3, 9)), "c2": Delivery(1, False, (5,))}
    assert trie.match("a/c").normal == {"c1": Delivery(1, False, (3, 9))}


def test_retain_as_published_wins_if_any_matching_subscription_has_it() -> None:
    # The module's documented rule for one merged copy (MQTT-3.3.1-12/-13 are per subscription).
    trie = _trie(
        ("a/+", "c1", SubscriptionOptions(qos=1, retain_as_published=True)),
        ("a/#", "c1", SubscriptionOptions(qos=2)),
    )
    assert trie.match("a/b").normal == {"c1": Delivery(2, True)}
    assert trie.match("a").normal == {"c1": Delivery(2, False)}  # only a/# matches "a"


def test_no_local_leaves_out_only_the_publishers_own_subscription_mqtt_3_8_3_3() -> None:
    no_local = SubscriptionOptions(qos=2, no_local=True, subscription_id=1)
    trie = _trie(("a/+", "c1", no_local), ("a/b", "c2", no_local), ("a/#", "c1", Q0))
    # MQTT-3.8.3-3: c1's No Local subscription is left out before merging: no QoS 2, no identifier 1.
    assert trie.match("a/b", publisher="c1").normal == {
        "c1": Delivery(0, False),
        "c2": Delivery(2, False, (1,)),
    }
    assert trie.match("a/b", publisher="c2").normal == {"c1": Delivery(2, False, (1,))}
    assert trie.match("a/b").normal == {"c1": Delivery(2, False, (1,)), "c2": Delivery(2, False, (1,))}
    assert trie.match("a/b", publisher="c3").normal == trie.match("a/b").normal
    # Replacing the subscription without No Local makes it deliver to its own publisher again.
    trie.subscribe("a/b", "c2", Q1)
    assert trie.match("a/b", publisher="c2").normal["c2"] == Delivery(1, False)


def test_no_local_on_a_shared_subscription_is_refused_mqtt_3_8_3_4() -> None:
    trie = SubscriptionTrie[str]()
    with pytest.raises(TopicError) as info:
        trie.subscribe("$share/g/a", "c1", SubscriptionOptions(qos=1, no_local=True))
    assert info.value.clause == "MQTT-3.8.3-4"
    assert len(trie) == 0
    assert trie.statistics().nodes == 0


def test_match_result_is_falsy_when_nobody_receives() -> None:
    trie = _trie(("a", "c1", Q0))
    assert trie.match("a")
    assert not trie.match("b")
    assert trie.match("a", publisher="c1")  # No Local is off: the publisher gets its own message


# --- shared subscriptions (§4.8.2) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [
        ("a/b", (None, "a/b")),
        ("$share/g/a/b", ("g", "a/b")),
        ("$share/g/#", ("g", "#")),
        ("$share/g//", ("g", "/")),
        ("$share/consumers-1/+/x", ("consumers-1", "+/x")),
        ("$share", (None, "$share")),  # not "$share/": an ordinary "$" filter
        ("$sharex/g/a", (None, "$sharex/g/a")),
        ("$SHARE/g/a", (None, "$SHARE/g/a")),  # case-sensitive (MQTT-4.7.3-4)
    ],
)
def test_split_shared(topic_filter: str, expected: tuple[str | None, str]) -> None:
    assert split_shared(topic_filter) == expected


@pytest.mark.parametrize(
    ("topic_filter", "clause"),
    [
        ("$share/", "MQTT-4.8.2-1"),  # empty ShareName
        ("$share//a", "MQTT-4.8.2-1"),
        ("$share/g", "MQTT-4.8.2-2"),  # no "/" after the ShareName
        ("$share/g/", "MQTT-4.8.2-2"),  # no filter after it
        ("$share/g+/a", "MQTT-4.8.2-2"),  # wildcards in the ShareName
        ("$share/#/a", "MQTT-4.8.2-2"),
        ("$share/+/a", "MQTT-4.8.2-2"),
        ("$share/g/a#", "MQTT-4.7.1-2"),
        ("$share/g/a/+b", "MQTT-4.7.1-3"),
        ("$share/g\x00/a", "MQTT-4.7.3-2"),
        ("$share/g/" + "a" * 65530, "MQTT-4.7.3-3"),  # the whole filter's length counts
    ],
)
def test_split_shared_refuses_invalid_shared_filters(topic_filter: str, clause: str) -> None:
    with pytest.raises(TopicError) as info:
        split_shared(topic_filter)
    assert info.value.clause == clause


def _picks(trie: SubscriptionTrie[str], topic: str, count: int) -> list[str]:
    picked = []
    for _ in range(count):
        shared = trie.match(topic).shared
        assert len(shared) == 1
        picked.append(shared[0].key)
    return picked


def test_shared_subscription_delivers_to_one_member_in_turn() -> None:
    trie = _trie(("$share/g/a/+", "c1", Q1), ("$share/g/a/+", "c2", Q2), ("$share/g/a/+", "c3", Q0))
    assert _picks(trie, "a/b", 7) == ["c1", "c2", "c3", "c1", "c2", "c3", "c1"]
    assert trie.match("a/b").shared == [SharedDelivery("$share/g/a/+", "c2", Delivery(2, False))]
    assert trie.statistics().shared_subscriptions == 1
    assert trie.match("a/b").normal == {}  # shared members get nothing through the normal path


def test_round_robin_survives_membership_changes() -> None:
    trie = _trie(*(("$share/g/t", f"c{i}", Q1) for i in range(1, 5)))
    assert _picks(trie, "t", 2) == ["c1", "c2"]
    trie.unsubscribe("$share/g/t", "c1")  # before the cursor: c3 is still next
    assert _picks(trie, "t", 1) == ["c3"]
    trie.unsubscribe("$share/g/t", "c4")  # the next one leaves: wrap to the first
    assert _picks(trie, "t", 1) == ["c2"]
    trie.subscribe("$share/g/t", "c2", Q0)  # a re-subscription keeps its place (MQTT-3.8.4-3)
    trie.subscribe("$share/g/t", "c5", Q1)  # a newcomer joins at the end
    assert _picks(trie, "t", 6) == ["c3", "c5", "c2", "c3", "c5", "c2"]


def test_shared_pick_skips_unavailable_members() -> None:
    trie = _trie(*(("$share/g/t", f"c{i}", Q1) for i in range(1, 4)))
    online = {"c1", "c3"}
    picked = [trie.match("t", available=online.__contains__).shared[0].key for _ in range(4)]
    assert picked == ["c1", "c3", "c1", "c3"]
    # Nobody available: the member at the cursor is picked anyway (the broker may queue for it).
    picked = [trie.match("t", available=lambda key: False).shared[0].key for _ in range(3)]
    assert picked == ["c1", "c2", "c3"]


def test_each_shared_subscription_picks_its_own_member() -> None:
    # A shared subscription is identified by ShareName and filter: three here, each delivers once.
    trie = _trie(
        ("$share/g/a/+", "c1", Q1),
        ("$share/g/a/+", "c2", Q1),
        ("$share/h/a/+", "c1", Q1),
        ("$share/g/a/#", "c3", Q1),
        ("$share/g/x/#", "c4", Q1),
    )
    result = trie.match("a/b")
    assert sorted((s.topic_filter, s.key) for s in result.shared) == [
        ("$share/g/a/#", "c3"),
        ("$share/g/a/+", "c1"),
        ("$share/h/a/+", "c1"),
    ]
    assert trie.statistics().shared_subscriptions == 4


def test_a_client_in_a_group_and_with_a_normal_subscription_gets_both() -> None:
    trie = _trie(
        ("$share/g/a/b", "c1", SubscriptionOptions(qos=1, subscription_id=4)),
        ("a/#", "c1", SubscriptionOptions(qos=0, subscription_id=8)),
    )
    result = trie.match("a/b")
    assert result.normal == {"c1": Delivery(0, False, (8,))}  # not merged with the shared one
    assert result.shared == [SharedDelivery("$share/g/a/b", "c1", Delivery(1, False, (4,)))]


def test_shared_wildcards_skip_dollar_topics_mqtt_4_7_2_1() -> None:
    trie = _trie(("$share/g/#", "c1", Q1), ("$share/g/$SYS/#", "c2", Q1))
    assert [s.key for s in trie.match("$SYS/uptime").shared] == ["c2"]
    assert [s.key for s in trie.match("a").shared] == ["c1"]


def test_shared_and_normal_subscriptions_of_one_key_are_separate_subscriptions() -> None:
    trie = SubscriptionTrie[str]()
    assert trie.subscribe("a", "c1", Q1) is False
    assert trie.subscribe("$share/g/a", "c1", Q1) is False
    assert trie.subscriptions("c1") == {"a": Q1, "$share/g/a": Q1}
    assert trie.unsubscribe("a", "c1") is True
    assert [s.key for s in trie.match("a").shared] == ["c1"]


# --- retained-store helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "prefix"),
    [
        ("a/b/c", "a/b/c"),
        ("a/b/+/c", "a/b/"),
        ("a/+", "a/"),
        ("a/#", "a"),  # "#" matches the parent level "a" too, so not "a/"
        ("a/b/+/#", "a/b/"),
        ("a//#", "a/"),
        ("+", ""),
        ("+/a", ""),
        ("#", ""),
        ("/#", ""),
        ("/+", "/"),
        ("$SYS/#", "$SYS"),
    ],
)
def test_literal_prefix(topic_filter: str, prefix: str) -> None:
    assert literal_prefix(topic_filter) == prefix


def test_iter_matching_topics_keeps_order_and_the_dollar_rule() -> None:
    topics = ["a", "a/b", "ab", "$SYS/x", "b/a", "a/b/c"]
    assert list(iter_matching_topics("a/#", topics)) == ["a", "a/b", "a/b/c"]
    assert list(iter_matching_topics("#", topics)) == ["a", "a/b", "ab", "b/a", "a/b/c"]


# --- properties -----------------------------------------------------------------------------------------

# Small alphabets as in test_topics: "" for empty levels, "$s" for the "$" rule, "z" for a level value no
# filter names.
FILTER_LEVELS = ["a", "b", "", "$s", "+"]
TOPIC_LEVELS = ["a", "b", "", "$s", "z"]
KEYS = ["c0", "c1", "c2"]
UNIVERSE = ["/".join(levels) for n in range(1, 4) for levels in itertools.product(TOPIC_LEVELS, repeat=n)]


@st.composite
def plain_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.sampled_from(FILTER_LEVELS), min_size=0, max_size=3))
    if not levels or draw(st.booleans()):
        levels.append("#")
    return "/".join(levels) or "#"


@st.composite
def any_filters(draw: st.DrawFn) -> str:
    topic_filter = draw(plain_filters())
    share = draw(st.sampled_from([None, None, "g", "h"]))
    return topic_filter if share is None else f"$share/{share}/{topic_filter}"


topic_names = st.lists(st.sampled_from(TOPIC_LEVELS), min_size=1, max_size=5).map("/".join).filter(bool)


@st.composite
def options(draw: st.DrawFn, *, shared: bool) -> SubscriptionOptions:
    return SubscriptionOptions(
        qos=draw(st.integers(0, 2)),
        no_local=False if shared else draw(st.booleans()),
        retain_as_published=draw(st.booleans()),
        retain_handling=draw(st.integers(0, 2)),
        subscription_id=draw(st.none() | st.integers(1, 4)),
    )


@dataclass(frozen=True)
class Sub:
    topic_filter: str
    key: str
    options: SubscriptionOptions


@dataclass(frozen=True)
class Unsub:
    topic_filter: str
    key: str


@dataclass(frozen=True)
class RemoveKey:
    key: str


@st.composite
def operations(draw: st.DrawFn, pool: list[str]) -> Sub | Unsub | RemoveKey:
    kind = draw(st.sampled_from(["sub", "sub", "sub", "unsub", "remove"]))
    key = draw(st.sampled_from(KEYS))
    if kind == "remove":
        return RemoveKey(key)
    topic_filter = draw(st.sampled_from(pool))
    if kind == "unsub":
        return Unsub(topic_filter, key)
    return Sub(topic_filter, key, draw(options(shared=topic_filter.startswith("$share/"))))


@st.composite
def scenarios(draw: st.DrawFn) -> list[Sub | Unsub | RemoveKey]:
    # A few filters per example, so that replacements, unsubscriptions that hit, overlaps and shared
    # subscriptions with several members are common rather than lucky.
    pool = draw(st.lists(any_filters(), min_size=1, max_size=6, unique=True))
    return draw(st.lists(operations(pool), max_size=30))


Model = dict[str, dict[str, SubscriptionOptions]]


def _apply(trie: SubscriptionTrie[str], model: Model, operation: Sub | Unsub | RemoveKey) -> None:
    """Apply one operation to both, checking the trie's answer against the model's."""
    if isinstance(operation, Sub):
        own = model.setdefault(operation.key, {})
        existed = operation.topic_filter in own
        own[operation.topic_filter] = operation.options
        assert trie.subscribe(operation.topic_filter, operation.key, operation.options) is existed
    elif isinstance(operation, Unsub):
        existed = operation.topic_filter in model.get(operation.key, {})
        if existed:
            del model[operation.key][operation.topic_filter]
        assert trie.unsubscribe(operation.topic_filter, operation.key) is existed
    else:
        removed = model.pop(operation.key, {})
        assert trie.remove_key(operation.key) == len(removed)
    for key in [k for k, own in model.items() if not own]:
        del model[key]


def _single(options: SubscriptionOptions) -> Delivery:
    ids = () if options.subscription_id is None else (options.subscription_id,)
    return Delivery(options.qos, options.retain_as_published, ids)


def _oracle_normal(model: Model, topic: str, publisher: str | None) -> dict[str, Delivery]:
    """The merge rules, written out over every subscription with topics.matches."""
    expected: dict[str, Delivery] = {}
    for key, own in model.items():
        hits = [
            options
            for topic_filter, options in own.items()
            if not topic_filter.startswith("$share/")
            and matches(topic_filter, topic)
            and not (options.no_local and key == publisher)
        ]
        if hits:
            expected[key] = Delivery(
                max(o.qos for o in hits),
                any(o.retain_as_published for o in hits),
                tuple(sorted(o.subscription_id for o in hits if o.subscription_id is not None)),
            )
    return expected


def _groups(model: Model) -> dict[str, dict[str, SubscriptionOptions]]:
    groups: dict[str, dict[str, SubscriptionOptions]] = {}
    for key, own in model.items():
        for topic_filter, options in own.items():
            if topic_filter.startswith("$share/"):
                groups.setdefault(topic_filter, {})[key] = options
    return groups


def _expected_nodes(model: Model) -> int:
    prefixes: set[tuple[str, ...]] = set()
    for own in model.values():
        for topic_filter in own:
            levels = split_shared(topic_filter)[1].split("/")
            prefixes.update(tuple(levels[:n]) for n in range(1, len(levels) + 1))
    return len(prefixes)


@settings(max_examples=150, deadline=None)
@given(
    scenarios(),
    st.lists(topic_names, max_size=6),
    st.sampled_from([None, *KEYS]),
)
def test_trie_agrees_with_the_dict_model_and_brute_force_matching(
    ops: list[Sub | Unsub | RemoveKey], extra_topics: list[str], publisher: str | None
) -> None:
    trie = SubscriptionTrie[str]()
    model: Model = {}
    for operation in ops:
        _apply(trie, model, operation)

    # State: the per-key view, the counters, and the nodes (none left empty, none missing).
    assert sorted(trie.keys()) == sorted(model)
    for key in KEYS:
        assert trie.subscriptions(key) == model.get(key, {})
    groups = _groups(model)
    assert trie.statistics() == TrieStatistics(
        keys=len(model),
        subscriptions=sum(len(own) for own in model.values()),
        shared_subscriptions=len(groups),
        nodes=_expected_nodes(model),
    )
    assert _count_nodes(trie) == trie.statistics().nodes

    # Routing: normal deliveries equal the oracle's; one pick per matching shared subscription, a member.
    for topic in [*UNIVERSE, *extra_topics]:
        result = trie.match(topic, publisher=publisher)
        assert result.normal == _oracle_normal(model, topic, publisher), topic
        wanted = {f for f in groups if matches(split_shared(f)[1], topic)}
        assert sorted(s.topic_filter for s in result.shared) == sorted(wanted), topic
        for picked in result.shared:
            assert picked.delivery == _single(groups[picked.topic_filter][picked.key])

    # Everyone leaves: nothing is left behind.
    for key in list(model):
        trie.remove_key(key)
    assert trie.statistics() == TrieStatistics(keys=0, subscriptions=0, shared_subscriptions=0, nodes=0)
    assert trie._root.is_empty()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["sub", "unsub", "pick"]), st.sampled_from(KEYS)), max_size=30))
def test_round_robin_is_fair(steps: list[tuple[str, str]]) -> None:
    """Whatever joined, re-joined or left before, len(members) consecutive messages reach every member
    exactly once."""
    trie = SubscriptionTrie[str]()
    members: set[str] = set()
    for action, key in steps:
        if action == "sub":
            trie.subscribe("$share/g/t/#", key, Q1)
            members.add(key)
        elif action == "unsub":
            trie.unsubscribe("$share/g/t/#", key)
            members.discard(key)
        else:
            trie.match("t/x")
        if members:
            assert sorted(_picks(trie, "t", len(members))) == sorted(members)
        else:
            assert not trie.match("t")


@settings(max_examples=300)
@given(plain_filters(), topic_names)
def test_literal_prefix_is_a_prefix_of_every_matching_topic(topic_filter: str, topic: str) -> None:
    if matches(topic_filter, topic):
        assert topic.startswith(literal_prefix(topic_filter))
    assert topic_filter.startswith(literal_prefix(topic_filter))
