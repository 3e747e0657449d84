"""JSON Lines shards of detect records: part-00000.jsonl, part-00001.jsonl, ... in one folder, each
written whole to a temporary file and renamed, so a shard on disk is always complete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from kpnet_edge.atomic import atomic_write_text
from kpnet_edge.errors import KpnetError

SHARD_PATTERN = "part-*.jsonl"
RECORDS_PER_SHARD = 10_000
"""Records per shard: a few MB of JSON, small enough to hold while it fills."""


class ShardWriter:
    """Collects JSON lines and writes a shard every `records_per_shard` of them (and the rest on
    close). Refuses a folder that already holds shards, so no earlier run's files are overwritten
    or mixed into this run's."""

    def __init__(self, folder: Path, records_per_shard: int = RECORDS_PER_SHARD) -> None:
        if records_per_shard < 1:
            raise KpnetError(f"records per shard must be at least 1, got {records_per_shard}")
        if folder.exists() and not folder.is_dir():
            raise KpnetError(f"{folder}: not a folder (shards go into a folder)")
        if folder.is_dir() and any(folder.glob(SHARD_PATTERN)):
            raise KpnetError(f"{folder}: already holds shards of an earlier run; "
                             "choose another --shards folder or remove them")
        self.folder = folder
        self.records_per_shard = records_per_shard
        self.written: list[Path] = []
        self._lines: list[str] = []

    def add(self, line: str) -> None:
        """Queue one record (a JSON document without a newline); a full shard goes to disk."""
        self._lines.append(line)
        if len(self._lines) >= self.records_per_shard:
            self._flush()

    def close(self) -> None:
        """Write the last, partly filled shard."""
        if self._lines:
            self._flush()

    def _flush(self) -> None:
        path = self.folder / f"part-{len(self.written):05d}.jsonl"
        atomic_write_text(path, "\n".join(self._lines) + "\n")
        self.written.append(path)
        self._lines = []


def read_shards(folder: Path) -> Iterator[dict]:
    """Every record of a shard folder, shard by shard (the order workers finished in)."""
    for path in sorted(folder.glob(SHARD_PATTERN)):
        with path.open() as lines:
            for number, line in enumerate(lines, 1):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    raise KpnetError(f"{path}:{number}: not a JSON record ({error.msg})") from None
