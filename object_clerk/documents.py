"""JSON and YAML documents as objects (filecloudsync's helpers), gzip-compressed when the key
ends in ``.gz``. They are written and read with the clerk's verified calls. YAML needs
PyYAML (``pip install 'object-clerk[yaml]'``)."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

from object_clerk.errors import ConfigurationError, DataTypeError, InvalidRequestError


def encode(text: str, key: str) -> bytes:
    data = text.encode("utf-8")
    # mtime=0: the same document always makes the same bytes, so the same ETag.
    return gzip.compress(data, mtime=0) if key.endswith(".gz") else data


def decode(data: bytes, bucket: str, key: str, operation: str) -> str:
    try:
        if key.endswith(".gz"):
            data = gzip.decompress(data)
        return data.decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise InvalidRequestError(
            f"the object is not {'gzip-compressed ' if key.endswith('.gz') else ''}UTF-8"
            f" text: {exc}",
            operation=operation,
            bucket=bucket,
            key=key,
        ) from exc


def content_type(kind: str, key: str) -> str:
    return "application/gzip" if key.endswith(".gz") else kind


def dump_json(value: Any, bucket: str, key: str, **options: Any) -> str:
    try:
        return json.dumps(value, **options)
    except (TypeError, ValueError) as exc:
        raise DataTypeError(
            f"cannot write as JSON: {exc}", operation="write_json", bucket=bucket, key=key
        ) from exc


def load_json(text: str, bucket: str, key: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"the object is not valid JSON: {exc}", operation="read_json", bucket=bucket, key=key
        ) from exc


def _yaml(operation: str) -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise ConfigurationError(
            f"{operation} needs PyYAML: pip install 'object-clerk[yaml]'"
        ) from exc
    return yaml


def dump_yaml(value: Any, bucket: str, key: str, **options: Any) -> str:
    yaml = _yaml("write_yaml")
    try:
        return str(yaml.safe_dump(value, **options))
    except yaml.YAMLError as exc:
        raise DataTypeError(
            f"cannot write as YAML: {exc}", operation="write_yaml", bucket=bucket, key=key
        ) from exc


def load_yaml(text: str, bucket: str, key: str) -> Any:
    yaml = _yaml("read_yaml")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidRequestError(
            f"the object is not valid YAML: {exc}", operation="read_yaml", bucket=bucket, key=key
        ) from exc
