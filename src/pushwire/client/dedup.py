"""A bounded, persisted set of push ids already handed to a handler.

MQTT QoS 1 is "at least once": after a reconnect the server redelivers every push the
device had not acknowledged, including one whose handler ran just before the link died.
The agent records each push id here *after* the handler returned and *before* it sends
PUBACK, so a redelivered push is recognised and acknowledged without running the handler
again.

The store keeps the newest ``capacity`` ids. On disk it is an append-only text file, one id
per line (each append is flushed and, with ``fsync=True``, synced); when the file holds
twice ``capacity`` lines it is rewritten with the newest ``capacity`` ids (temp file +
rename). A torn last line after a crash is ignored on load.

Example::

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "device.json.seen"
    >>> seen = DedupStore(path, capacity=2)
    >>> seen.add("a"); seen.add("b"); seen.add("c")
    >>> "a" in seen, "c" in seen
    (False, True)
    >>> "c" in DedupStore(path, capacity=2)   # survives a restart
    True
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import IO

# push ids are UUIDs; accept any short token-like id, refuse anything that could break a line
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class DedupStore:
    def __init__(self, path: Path, capacity: int = 10_000, *, fsync: bool = True) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.path = path
        self.capacity = capacity
        self.fsync = fsync
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lines_on_disk = 0
        self._file: IO[str] | None = None
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return
        lines = text.split("\n")
        complete = lines[:-1]  # the part after the last newline is empty or a torn write
        for line in complete:
            if _ID.match(line):
                self._remember(line)
        self._lines_on_disk = len(complete)
        if lines[-1]:
            self._compact()  # drop the torn tail so the next append starts on a fresh line

    def _remember(self, push_id: str) -> None:
        self._ids[push_id] = None
        self._ids.move_to_end(push_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def __contains__(self, push_id: object) -> bool:
        return push_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, push_id: str) -> None:
        """Remember ``push_id`` durably (returns after the line is on disk)."""
        if not _ID.match(push_id):
            raise ValueError(f"not a push id: {push_id!r}")
        self._remember(push_id)
        if self._lines_on_disk + 1 > 2 * self.capacity:
            self._compact()
            return
        f = self._open()
        f.write(push_id + "\n")
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())
        self._lines_on_disk += 1

    def _open(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a")  # noqa: SIM115 - closed in close()/_compact()
        return self._file

    def _compact(self) -> None:
        self.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            f.writelines(push_id + "\n" for push_id in self._ids)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._lines_on_disk = len(self._ids)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
