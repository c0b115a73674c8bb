"""The agent's push-id dedup store: bounded, survives restarts and torn writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushwire.client.dedup import DedupStore


def test_bounded_newest_ids_kept_and_persisted(tmp_path: Path) -> None:
    path = tmp_path / "dev.json.seen"
    store = DedupStore(path, capacity=100)
    ids = [f"id-{n}" for n in range(250)]
    for push_id in ids:
        store.add(push_id)
    assert len(store) == 100
    assert ids[149] not in store and ids[150] in store and ids[-1] in store
    # the file is compacted: never more than 2 x capacity lines
    assert len(path.read_text().splitlines()) <= 200
    store.close()
    again = DedupStore(path, capacity=100)
    assert len(again) == 100 and ids[150] in again and ids[149] not in again


def test_torn_last_line_is_ignored_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "dev.json.seen"
    path.write_text("aaa\nbbb\nccc-half")
    store = DedupStore(path, capacity=10)
    assert "aaa" in store and "bbb" in store and "ccc-half" not in store
    store.add("ddd")
    store.close()
    assert path.read_text() == "aaa\nbbb\nddd\n"


def test_hostile_ids_refused(tmp_path: Path) -> None:
    store = DedupStore(tmp_path / "s", capacity=10)
    for bad in ("", "a\nb", "x" * 200, "spaces here"):
        with pytest.raises(ValueError):
            store.add(bad)
    (tmp_path / "t").write_text("ok-1\n\x00\x01garbage\nok-2\n")
    assert len(DedupStore(tmp_path / "t")) == 2
