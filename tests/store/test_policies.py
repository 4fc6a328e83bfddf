"""Policy records and their canonical entries (what enforcement caches compiled decisions by)."""

from __future__ import annotations

from pathlib import Path

import orjson

from edgetwin.store import Store, WriteTxn
from edgetwin.store.policies import delete_policy, get_policy, get_policy_entries, put_policy

ENTRIES = {
    "DEFAULT": {
        "subjects": {"nginx:a": {"type": "t"}},
        "resources": {"thing:/": {"grant": ["READ"], "revoke": []}},
    }
}


def test_identical_entries_share_bytes_and_delete_together(tmp_path: Path) -> None:
    with Store.open(tmp_path, map_size_mb=4, max_map_size_mb=8) as store:

        def write(w: WriteTxn) -> None:
            put_policy(w, {"policyId": "ns:p1", "entries": ENTRIES, "_revision": 1})
            # Same entries, other key order and other hidden fields: the same canonical bytes.
            reordered = {
                "DEFAULT": {
                    "resources": ENTRIES["DEFAULT"]["resources"],
                    "subjects": {"nginx:a": {"type": "t"}},
                }
            }
            put_policy(w, {"_revision": 7, "entries": reordered, "policyId": "ns:p2"})

        store.commit_batch([write])
        with store.read() as r:
            one, two = get_policy_entries(r, "ns:p1"), get_policy_entries(r, "ns:p2")
            assert one is not None
            assert one == two
            assert orjson.loads(one) == ENTRIES
        store.commit_batch([lambda w: delete_policy(w, "ns:p1")])
        with store.read() as r:
            assert get_policy(r, "ns:p1") is None
            assert get_policy_entries(r, "ns:p1") is None
            assert get_policy_entries(r, "ns:p2") == two


def test_records_without_an_entries_record_still_enforce(tmp_path: Path) -> None:
    with Store.open(tmp_path, map_size_mb=4, max_map_size_mb=8) as store:
        store.commit_batch(
            [lambda w: w.put("policies", b"ns:old", orjson.dumps({"policyId": "ns:old", "entries": ENTRIES}))]
        )
        with store.read() as r:
            raw = get_policy_entries(r, "ns:old")
        assert raw is not None
        assert orjson.loads(raw) == ENTRIES
