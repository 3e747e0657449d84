"""Fixed validation splits carved from training sources, by a hash of each image's name.

A name's side of the split never changes when images are added or removed, and the split is also
written out as a list (configs/splits/) so what was held back is on record and checked at load.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from kpnet_edge.atomic import atomic_write_text
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.errors import KpnetError


def is_validation(name: str, fraction: float, salt: str = "kpnet-val") -> bool:
    """True for the `fraction` of names whose salted SHA-1 falls in the validation bucket."""
    digest = hashlib.sha1(f"{salt}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") < fraction * 2**32


def split_records(records: Sequence[AnnotatedImage], image_root: str | Path, fraction: float
                  ) -> tuple[list[AnnotatedImage], list[AnnotatedImage]]:
    """(train, validation) records, split by is_validation of the path relative to image_root."""
    train, validation = [], []
    for record in records:
        name = relative_name(record.path, image_root)
        (validation if is_validation(name, fraction) else train).append(record)
    return train, validation


def relative_name(path: str | Path, image_root: str | Path) -> str:
    """The image's path relative to image_root, with forward slashes."""
    return Path(path).resolve().relative_to(Path(image_root).resolve()).as_posix()


def write_split(records: Sequence[AnnotatedImage], image_root: str | Path, list_file: str | Path) -> None:
    """Record a split: one relative image name per line, sorted."""
    names = sorted(relative_name(record.path, image_root) for record in records)
    atomic_write_text(list_file, "\n".join(names) + "\n")


def read_split(list_file: str | Path) -> set[str]:
    """The names in a split list."""
    try:
        return {line.strip() for line in Path(list_file).read_text().splitlines() if line.strip()}
    except OSError as error:
        raise KpnetError(f"{list_file}: cannot read split list ({error.strerror})") from None


def check_split(records: Sequence[AnnotatedImage], image_root: str | Path, fraction: float,
                list_file: str | Path) -> None:
    """Raise when the recorded validation list and the hash split of these records disagree."""
    _, validation = split_records(records, image_root, fraction)
    recorded = read_split(list_file)
    names = {relative_name(record.path, image_root) for record in validation}
    if names != recorded:
        extra, missing = sorted(names - recorded)[:3], sorted(recorded - names)[:3]
        raise KpnetError(
            f"{list_file}: the validation split changed ({len(names)} images now, {len(recorded)} "
            f"recorded; new {extra}, gone {missing}); refusing to train on held-out images"
        )
