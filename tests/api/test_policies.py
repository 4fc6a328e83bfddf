"""Issue 4 as a new user would try it: policies decide who sees and changes what, over the HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from edgetwin.api.auth import Authenticator
from edgetwin.api.things import ThingsApi
from edgetwin.config import AuthSettings, User
from edgetwin.core.bus import EventBus
from edgetwin.core.service import TwinService
from edgetwin.core.writer import StoreWriter
from edgetwin.store import Store
from tests.api.conftest import basic

USERS = AuthSettings(
    users=(User("ditto", password="ditto"), User("observer", password="o"), User("stranger", password="s"))
)
T = "org.eclipse.ditto:fancy-thing"
P = "org.eclipse.ditto:fancy-policy"

# ditto.md §3.2/§3.3: an owner, and an observer that may read one feature except one property.
POLICY: dict[str, Any] = {
    "entries": {
        "owner": {
            "subjects": {"nginx:ditto": {"type": "nginx basic auth user"}},
            "resources": {
                "thing:/": {"grant": ["READ", "WRITE"], "revoke": []},
                "policy:/": {"grant": ["READ", "WRITE"], "revoke": []},
                "message:/": {"grant": ["READ", "WRITE"], "revoke": []},
            },
        },
        "observer": {
            "subjects": {"nginx:observer": {"type": "technical client"}},
            "resources": {
                "thing:/features/featureY": {"grant": ["READ"], "revoke": []},
                "thing:/features/featureY/properties/location/city": {"grant": [], "revoke": ["READ"]},
            },
        },
    }
}
THING = {
    "policyId": P,
    "attributes": {"manufacturer": "ACME", "serial": "S-1"},
    "features": {
        "featureX": {"properties": {"secret": 42}},
        "featureY": {"properties": {"location": {"city": "Berlin", "lat": 52.5}, "on": True}},
    },
}


@pytest.fixture
async def clients(tmp_path: Path) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    with Store.open(tmp_path, map_size_mb=16, max_map_size_mb=64) as store:
        writer = StoreWriter(store, queue_size=256, max_batch=64)
        app = ThingsApi(TwinService(store, writer, EventBus()), Authenticator(USERS))
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.serve)
            made = {}
            for name, password in (("ditto", "ditto"), ("observer", "o"), ("stranger", "s")):
                made[name] = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://edge:8080",
                    headers={"Authorization": basic(name, password)},
                )
            owner = made["ditto"]
            assert (await owner.put(f"/api/2/policies/{P}", json=POLICY)).status_code == 201
            assert (await owner.put(f"/api/2/things/{T}", json=THING)).status_code == 201
            yield made
            for c in made.values():
                await c.aclose()
            writer.close()


async def test_owner_sees_everything(clients: dict[str, httpx.AsyncClient]) -> None:
    r = await clients["ditto"].get(f"/api/2/things/{T}")
    assert r.status_code == 200
    assert r.json() == {"thingId": T, **THING}


async def test_partial_observer_sees_only_what_is_granted(clients: dict[str, httpx.AsyncClient]) -> None:
    observer = clients["observer"]
    r = await observer.get(f"/api/2/things/{T}")
    assert r.status_code == 200
    assert r.json() == {
        "thingId": T,
        "features": {"featureY": {"properties": {"location": {"lat": 52.5}, "on": True}}},
    }
    r = await observer.get(f"/api/2/things/{T}/attributes")
    assert r.status_code == 404
    assert r.json()["error"] == "things:attributes.notfound"
    r = await observer.get(f"/api/2/things/{T}/features/featureY/properties/location/city")
    assert r.status_code == 404
    r = await observer.get(f"/api/2/things/{T}/features/featureY/properties/on")
    assert r.json() is True


async def test_unauthorised_writes_are_403_and_change_nothing(clients: dict[str, httpx.AsyncClient]) -> None:
    observer = clients["observer"]
    r = await observer.put(f"/api/2/things/{T}/features/featureY/properties/on", json=False)
    assert r.status_code == 403
    assert r.json()["error"] == "things:feature.property.notmodifiable"
    r = await observer.patch(
        f"/api/2/things/{T}/features/featureY/properties",
        json={"on": False},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 403
    r = await observer.delete(f"/api/2/things/{T}")
    assert r.status_code == 403
    assert r.json()["error"] == "things:thing.notdeletable"
    assert (await clients["ditto"].get(f"/api/2/things/{T}/features/featureY/properties/on")).json() is True


async def test_hidden_things_look_missing(clients: dict[str, httpx.AsyncClient]) -> None:
    stranger = clients["stranger"]
    for method in ("GET", "DELETE"):
        r = await stranger.request(method, f"/api/2/things/{T}")
        assert r.status_code == 404
        assert r.json()["error"] == "things:thing.notfound"
    r = await stranger.put(f"/api/2/things/{T}/attributes/x", json=1)
    assert r.status_code == 404  # not even a 403: existence is not revealed
    assert (await stranger.get("/api/2/search/things")).json()["items"] == []
    assert (await stranger.get("/api/2/search/things/count")).json() == 0
    assert (await stranger.get(f"/api/2/things?ids={T}")).json() == []
    assert (await stranger.get(f"/api/2/policies/{P}")).status_code == 404


async def test_search_and_count_are_filtered_and_cannot_probe(clients: dict[str, httpx.AsyncClient]) -> None:
    observer = clients["observer"]
    items = (await observer.get("/api/2/search/things")).json()["items"]
    assert items == [
        {"thingId": T, "features": {"featureY": {"properties": {"location": {"lat": 52.5}, "on": True}}}}
    ]
    assert (await observer.get("/api/2/search/things/count")).json() == 1
    # A filter on an unreadable field matches nothing for this caller, whatever the value.
    probe = 'eq(features/featureY/properties/location/city,"Berlin")'
    assert (await observer.get("/api/2/search/things", params={"filter": probe})).json()["items"] == []
    assert (await observer.get("/api/2/search/things/count", params={"filter": probe})).json() == 0
    owner_count = await clients["ditto"].get("/api/2/search/things/count", params={"filter": probe})
    assert owner_count.json() == 1


async def test_conditions_on_unreadable_fields_are_412(clients: dict[str, httpx.AsyncClient]) -> None:
    owner = clients["ditto"]
    # Give the observer WRITE on featureY so that only the condition's readability decides.
    await owner.put(
        f"/api/2/policies/{P}/entries/observer/resources/thing:/features/featureY",
        json={"grant": ["READ", "WRITE"], "revoke": []},
    )
    observer = clients["observer"]
    url = f"/api/2/things/{T}/features/featureY/properties/on"
    r = await observer.put(url, json=False, params={"condition": "eq(attributes/manufacturer,'ACME')"})
    assert r.status_code == 412
    assert "insufficient permissions" in r.json()["message"]
    r = await observer.put(url, json=False, params={"condition": "eq(features/featureY/properties/on,true)"})
    assert r.status_code == 204


async def test_policy_api_crud_and_etags(clients: dict[str, httpx.AsyncClient]) -> None:
    owner = clients["ditto"]
    r = await owner.get(f"/api/2/policies/{P}")
    assert r.status_code == 200
    assert r.headers["etag"] == '"rev:1"'
    assert r.json()["policyId"] == P
    assert set(r.json()["entries"]) == {"owner", "observer"}
    r = await owner.get(f"/api/2/policies/{P}/entries/owner/subjects/nginx:ditto")
    assert r.json() == {"type": "nginx basic auth user"}
    r = await owner.get(f"/api/2/policies/{P}/entries/observer/resources/thing:/features/featureY")
    assert r.json() == {"grant": ["READ"], "revoke": []}
    r = await owner.put(
        f"/api/2/policies/{P}/entries/observer/subjects/nginx:stranger", json={"type": "added"}
    )
    assert r.status_code == 201
    assert r.headers["location"].endswith("/entries/observer/subjects/nginx:stranger")
    assert (await clients["stranger"].get(f"/api/2/things/{T}")).status_code == 200  # now an observer too
    r = await owner.delete(f"/api/2/policies/{P}/entries/observer/subjects/nginx:stranger")
    assert r.status_code == 204
    assert (await clients["stranger"].get(f"/api/2/things/{T}")).status_code == 404
    r = await owner.put(f"/api/2/policies/{P}", json=POLICY, headers={"If-Match": '"rev:1"'})
    assert r.status_code == 412
    assert r.json()["error"] == "policies:precondition.failed"
    r = await owner.get(f"/api/2/policies/{P}", headers={"If-None-Match": r.headers["etag"]})
    assert r.status_code == 304


async def test_policy_lockout_is_refused(clients: dict[str, httpx.AsyncClient]) -> None:
    owner = clients["ditto"]
    r = await owner.delete(f"/api/2/policies/{P}/entries/owner")
    assert r.status_code == 403
    assert r.json()["error"] == "policies:policy.modificationinvalid"
    r = await owner.put(
        f"/api/2/policies/{P}/entries/owner/resources/policy:/", json={"grant": ["READ"], "revoke": []}
    )
    assert r.status_code == 403
    assert r.json()["error"] == "policies:policy.modificationinvalid"
    assert (await owner.get(f"/api/2/policies/{P}")).status_code == 200


async def test_observer_cannot_change_the_policy(clients: dict[str, httpx.AsyncClient]) -> None:
    r = await clients["observer"].put(
        f"/api/2/policies/{P}/entries/observer/subjects/nginx:x", json={"type": "t"}
    )
    assert r.status_code == 404  # the observer may not even read the policy


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {
                "entries": {
                    "e": {
                        "subjects": {"nginx:a": {"type": "t"}},
                        "resources": {"thing:/": {"grant": ["READ"]}},
                    }
                }
            },
            None,
        ),
        (
            {
                "entries": {
                    "e": {
                        "subjects": {"nginx:a": {"type": "t"}},
                        "resources": {"thing:/": {"grant": ["FLY"], "revoke": []}},
                    }
                }
            },
            None,
        ),
        (
            {
                "entries": {
                    "e": {
                        "subjects": {"nginx:a": {"type": "t"}},
                        "resources": {"nope:/": {"grant": [], "revoke": []}},
                    }
                }
            },
            None,
        ),
        ({"entries": {"e": {"subjects": {"no-colon": {"type": "t"}}, "resources": {}}}}, None),
    ],
)
async def test_malformed_policies_are_400(
    clients: dict[str, httpx.AsyncClient], body: dict[str, Any], code: str | None
) -> None:
    r = await clients["ditto"].put("/api/2/policies/org.eclipse.ditto:bad", json=body)
    assert r.status_code == 400
    assert r.json()["status"] == 400


async def test_deleting_the_policy_hides_its_things(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    owner = clients["ditto"]
    assert (await owner.delete(f"/api/2/policies/{P}")).status_code == 204
    assert (await owner.get(f"/api/2/things/{T}")).status_code == 404
