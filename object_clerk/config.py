"""object-clerk 1.1.0's configuration module, for code that imports from it.

Each name is computed from the settings (:mod:`object_clerk.settings`: the environment and
``.env``) when it is read, never when ``object_clerk`` is imported, so it reflects the
environment of the moment:

* ``MULTIPART_THRESHOLD``: the multipart threshold, which is also the part size;
* ``CLIENT_CONFIG``: the botocore ``Config`` of the clients the clerk builds;
* ``UPLOAD_CONFIG``: the uploads' ``TransferConfig``;
* ``CHECKSUM_RETRY_CONFIG``: the retry policy for checksum mismatches, as a dict;
* ``CONNECTION_RETRY_EXCEPTIONS`` and ``CHECKSUM_RETRY_EXCEPTIONS``: what each retries.
"""

from __future__ import annotations

from typing import Any

from object_clerk.errors import ChecksumMismatchError, TransientError
from object_clerk.settings import CHECKSUM_RETRY_DEFAULTS, load_settings

# The four computed names come from __getattr__ below.
__all__ = [
    "CHECKSUM_RETRY_CONFIG",  # noqa: F822
    "CHECKSUM_RETRY_EXCEPTIONS",
    "CLIENT_CONFIG",  # noqa: F822
    "CONNECTION_RETRY_EXCEPTIONS",
    "MULTIPART_THRESHOLD",  # noqa: F822
    "UPLOAD_CONFIG",  # noqa: F822
]

CONNECTION_RETRY_EXCEPTIONS: tuple[type[Exception], ...] = (TransientError,)
CHECKSUM_RETRY_EXCEPTIONS: tuple[type[Exception], ...] = (ChecksumMismatchError,)


def __getattr__(name: str) -> Any:
    if name == "MULTIPART_THRESHOLD":
        return load_settings().multipart_threshold
    if name == "CLIENT_CONFIG":
        return load_settings().client_config()
    if name == "UPLOAD_CONFIG":
        return load_settings().upload_transfer_config()
    if name == "CHECKSUM_RETRY_CONFIG":
        return load_settings().checksum_retry_config or dict(CHECKSUM_RETRY_DEFAULTS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
