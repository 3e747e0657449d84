"""manifest.json beside converted models: what each file takes and returns, how it was made and
checked. Written by `convert`, read by the runtime adapters and reports; it belongs to neither.

A folder may hold only some of the files its manifest lists (a device gets one model file and the
manifest): the schema is checked on load, each file only when it is opened (present, sha256)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kpnet_edge.errors import KpnetError

MANIFEST_NAME = "manifest.json"
SCHEMA = "kpnet-edge/manifest"
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor. quantization: {"scale", "zero_point"} for integer tensors
    (real = scale * (q - zero_point)); index: the runtime's tensor index where names are lost
    (TFLite), else None."""

    name: str
    shape: list[int]
    dtype: str
    layout: str
    index: int | None = None
    quantization: dict[str, float] | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One model file: how to feed it, what it returns, how far it is from PyTorch."""

    file: str
    format: str
    precision: str
    batch: int
    runtime: str
    sha256: str
    size_bytes: int
    input: TensorInfo
    outputs: list[TensorInfo]
    normalisation: dict[str, Any]
    parity: dict[str, float]
    tolerance: dict[str, float]
    checked_on: str
    """What the parity figures were measured on (the folder's calibration check images, or noise)."""
    options: dict[str, Any] = field(default_factory=dict)
    extra_files: dict[str, str] = field(default_factory=dict)
    """Side files the model needs (OpenVINO's .bin), name -> sha256."""

    def output(self, name: str) -> TensorInfo:
        """The output tensor called `name` (one of config.OUTPUT_NAMES)."""
        for tensor in self.outputs:
            if tensor.name == name:
                return tensor
        raise KeyError(f"{self.file} has no output {name!r}; it has {[t.name for t in self.outputs]}")

    @property
    def input_size(self) -> int:
        """Side of the square canvas the model takes (the letterbox size)."""
        return self.input.shape[1] if self.input.layout == "NHWC" else self.input.shape[2]

    @property
    def files(self) -> dict[str, str]:
        """Every file this model needs (itself and its side files), name -> sha256."""
        return {self.file: self.sha256, **self.extra_files}


@dataclass(frozen=True)
class Manifest:
    """Everything `convert` wrote into one folder."""

    models: list[ModelEntry]
    source: dict[str, Any]
    calibration: dict[str, Any] | None
    preprocessing: str
    tools: dict[str, str]
    created: str

    def find(self, format: str, precision: str, batch: int = 1) -> ModelEntry:
        """The entry for (format, precision, batch); KeyError listing what exists."""
        for entry in self.models:
            if (entry.format, entry.precision, entry.batch) == (format, precision, batch):
                return entry
        have = [(m.format, m.precision, m.batch) for m in self.models]
        raise KeyError(f"no {format} {precision} batch-{batch} model; the manifest has {have}")

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **asdict(self)}

    def write(self, folder: str | Path) -> Path:
        """Write folder/manifest.json (the caller makes the folder's contents appear atomically)."""
        path = Path(folder) / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def present(self, folder: str | Path) -> list[ModelEntry]:
        """The entries whose files are all in `folder` (a device may hold only some of them)."""
        folder = manifest_folder(folder)
        return [m for m in self.models if all((folder / name).is_file() for name in m.files)]


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_folder(folder: str | Path) -> Path:
    """The folder of a manifest given as its folder or as the manifest file itself."""
    path = Path(folder)
    return path.parent if path.name == MANIFEST_NAME and not path.is_dir() else path


def verify_model(folder: str | Path, entry: ModelEntry) -> None:
    """KpnetError naming the file unless every file of `entry` is in `folder` with its sha256:
    a truncated, corrupted or swapped model must not run and return garbage faces."""
    folder = manifest_folder(folder)
    for name, digest in entry.files.items():
        file = folder / name
        if not file.is_file():
            raise KpnetError(f"{file}: missing; {folder / MANIFEST_NAME} lists it for the "
                             f"{entry.format} {entry.precision} model")
        if sha256_file(file) != digest:
            raise KpnetError(f"{file}: does not match its sha256 in {MANIFEST_NAME} (modified or "
                             "damaged after conversion); refusing to run it")


def load_manifest(folder: str | Path, verify: bool = False) -> Manifest:
    """Read and check folder/manifest.json (a folder or the file itself).

    Checks the schema (every field, its type); with verify, also that every model file is there
    with its sha256 (else only the files opened are checked, by verify_model). Raises KpnetError
    naming the file and the field at fault.
    """
    path = manifest_folder(folder) / MANIFEST_NAME
    if not path.exists():
        raise KpnetError(f"{path}: no such manifest (is this a `kpnet-edge convert` output folder?)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise KpnetError(f"{path}: cannot read manifest ({error})") from None
    except json.JSONDecodeError as error:
        raise KpnetError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from None
    version = (data.get("schema"), data.get("schema_version")) if isinstance(data, dict) else (None, None)
    if version != (SCHEMA, SCHEMA_VERSION):  # before the fields: another version has other fields
        raise KpnetError(f"{path}: schema {version[0]!r} v{version[1]}, this kpnet-edge reads "
                         f"{SCHEMA!r} v{SCHEMA_VERSION} (convert the model again)")
    _check(data, _MANIFEST, "manifest", path)
    manifest = _from_dict(data)
    if verify:
        for entry in manifest.models:
            verify_model(path.parent, entry)
    return manifest


def _from_dict(data: dict[str, Any]) -> Manifest:
    models = []
    for item in data["models"]:
        item = dict(item)
        item["input"] = TensorInfo(**item["input"])
        item["outputs"] = [TensorInfo(**t) for t in item["outputs"]]
        models.append(ModelEntry(**item))
    fields = {k: v for k, v in data.items() if k not in ("schema", "schema_version", "models")}
    return Manifest(models=models, **fields)


# The schema, as data: a type, a tuple of alternatives, [spec] for a list of spec, {key: spec}
# for an object with exactly these keys, _MapOf(spec) for an object with any keys.
class _MapOf:
    def __init__(self, spec: Any) -> None:
        self.spec = spec


_NUMBER = (int, float)
_QUANT = {"scale": _NUMBER, "zero_point": int}
_TENSOR = {
    "name": str,
    "shape": [int],
    "dtype": str,
    "layout": str,
    "index": (int, None),
    "quantization": (_QUANT, None),
}
_MODEL = {
    "file": str,
    "format": str,
    "precision": str,
    "batch": int,
    "runtime": str,
    "sha256": str,
    "size_bytes": int,
    "input": _TENSOR,
    "outputs": [_TENSOR],
    "normalisation": _MapOf((str, _NUMBER, bool, [_NUMBER])),
    "parity": _MapOf(_NUMBER),
    "tolerance": _MapOf(_NUMBER),
    "checked_on": str,
    "options": _MapOf((str, _NUMBER, bool, None)),
    "extra_files": _MapOf(str),
}
_MANIFEST = {
    "schema": str,
    "schema_version": int,
    "models": [_MODEL],
    "source": _MapOf((str, None, _MapOf(int))),
    "calibration": (_MapOf((str, int, bool, None, [str], _MapOf(int))), None),
    "preprocessing": str,
    "tools": _MapOf(str),
    "created": str,
}


def _check(value: Any, spec: Any, where: str, path: Path) -> None:
    while isinstance(spec, tuple):  # alternatives: check against the first of the value's kind
        if not _kind_matches(value, spec):
            raise KpnetError(f"{path}: {where}: expected {_describe(spec)}, got {_short(value)}")
        spec = next(s for s in spec if _kind_matches(value, s))
    if not _kind_matches(value, spec):
        raise KpnetError(f"{path}: {where}: expected {_describe(spec)}, got {_short(value)}")
    if isinstance(spec, list):
        for i, item in enumerate(value):
            _check(item, spec[0], f"{where}[{i}]", path)
    elif isinstance(spec, dict):
        missing, unexpected = sorted(set(spec) - set(value)), sorted(set(value) - set(spec))
        if missing or unexpected:
            raise KpnetError(f"{path}: {where}: missing keys {missing}, unexpected keys {unexpected}")
        for key, sub in spec.items():
            _check(value[key], sub, f"{where}.{key}", path)
    elif isinstance(spec, _MapOf):
        for key, item in value.items():
            _check(item, spec.spec, f"{where}.{key}", path)


def _kind_matches(value: Any, spec: Any) -> bool:
    """Whether value is of the spec's kind; the contents of lists and objects are checked later."""
    if spec is None:
        return value is None
    if isinstance(spec, tuple):
        return any(_kind_matches(value, s) for s in spec)
    if isinstance(spec, list):
        return isinstance(value, list)
    if isinstance(spec, (dict, _MapOf)):
        return isinstance(value, dict)
    if spec in (int, float):
        return isinstance(value, spec) and not isinstance(value, bool)
    return isinstance(value, spec)


def _describe(spec: Any) -> str:
    if spec is None:
        return "null"
    if isinstance(spec, tuple):
        return " or ".join(_describe(s) for s in spec)
    if isinstance(spec, list):
        return f"a list of ({_describe(spec[0])})"
    if isinstance(spec, dict):
        return f"an object with keys {sorted(spec)}"
    if isinstance(spec, _MapOf):
        return f"an object of ({_describe(spec.spec)})"
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false"}[spec]


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    if isinstance(value, dict):
        text = f"an object with keys {sorted(value)}"
    return text if len(text) <= 80 else text[:77] + "..."
