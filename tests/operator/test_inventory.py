from __future__ import annotations

from propylon_operator import inventory


def _secret(rv: str, uid: str = "u1", value: str = "x") -> dict:
    return {
        "kind": "Secret",
        "metadata": {"name": "k", "namespace": "ns", "uid": uid, "resourceVersion": rv},
        "v": value,
    }


def test_an_older_copy_does_not_replace_a_newer_one() -> None:
    store = inventory.Inventory()
    changes: list[inventory.Key] = []
    store.subscribe(changes.append)
    store.put(_secret("10", value="new"), only_if_newer=True)
    store.put(_secret("9", value="old"), only_if_newer=True)
    key = inventory.Key("Secret", "ns", "k")
    assert store.get(key)["v"] == "new"
    assert changes == [key]
    store.put(_secret("5", uid="u2", value="recreated"), only_if_newer=True)  # a new object of the same name
    assert store.get(key)["v"] == "recreated"


def test_discard_and_status_updates() -> None:
    store = inventory.Inventory()
    changes: list[inventory.Key] = []
    store.subscribe(changes.append)
    store.put(_secret("1"))
    key = inventory.Key("Secret", "ns", "k")
    store.update_status(key, {"a": 1})
    assert store.get(key)["status"] == {"a": 1}
    assert len(changes) == 1  # our own status write wakes nobody
    store.discard(key)
    store.discard(key)
    assert store.get(key) is None
    assert len(changes) == 2
    assert list(store.of_kind("Secret")) == []
