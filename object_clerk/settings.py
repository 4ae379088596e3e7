"""Settings: the only module that reads the environment, and only when settings are created.

Precedence, lowest first: defaults, the ``.env`` file, environment variables, a
``settings=`` object given to :class:`~object_clerk.ObjectClerk`, then the arguments given
to :class:`ClerkSettings` or :class:`~object_clerk.ObjectClerk`. The endpoint counts as one
setting named two ways (``endpoint_url``, or ``host`` and ``port``): see :func:`layered`.
The seed's variables (``MULTIPART_THRESHOLD``, ``S3_CLIENT_CONFIG``, ``S3_UPLOAD_CONFIG``,
``S3_DOWNLOAD_CONFIG``) keep their names; every other variable starts with
``OBJECT_CLERK_``.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any, Literal

from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as _PydanticSettingsError

from object_clerk.checksums import ALGORITHMS, Crc
from object_clerk.errors import ConfigurationError
from object_clerk.etag import MiB
from object_clerk.retry import RetryPolicy

__all__ = ["DEFAULT_CLIENT_CONFIG", "ClerkSettings", "TransferSettings", "load_settings"]

ENV_PREFIX = "OBJECT_CLERK_"

# Merged under S3_CLIENT_CONFIG: a key the user sets wins, the others keep these values.
# - retries max_attempts 0: botocore makes one HTTP attempt; the clerk's policy is the only
#   retry layer, so attempts never multiply.
# - when_required checksums: botocore >= 1.36 otherwise sends aws-chunked bodies with CRC
#   trailers over HTTPS, which Ceph RGW 16 answers with 411 MissingContentLength. The clerk
#   sends Content-MD5 itself, which every S3 store checks.
DEFAULT_CLIENT_CONFIG: dict[str, Any] = {
    "connect_timeout": 60,
    "read_timeout": 60,
    "retries": {"max_attempts": 0},
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}

# TransferConfig keys the clerk understands. Others are refused, naming the variable.
_UPLOAD_KEYS = {"max_concurrency", "use_threads"}
# MULTIPART_THRESHOLD sets both (object-clerk 1.x's rule): given for uploads, they are
# discarded with a warning.
_PART_KEYS = {"multipart_threshold", "multipart_chunksize"}
_DOWNLOAD_KEYS = {
    "multipart_threshold",
    "multipart_chunksize",
    "max_concurrency",
    "use_threads",
    "io_chunksize",
}
_IGNORED_TRANSFER_KEYS = {
    "max_io_queue",
    "num_download_attempts",
    "max_bandwidth",
    "max_request_concurrency",
    "max_submission_concurrency",
    "preferred_transfer_client",
}
# object-clerk 1.1.0's CHECKSUM_RETRY_CONFIG: its own retry policy for checksum mismatches.
CHECKSUM_RETRY_DEFAULTS: dict[str, Any] = {
    "retry_delay": 1,
    "retry_backoff": 1,
    "retry_jitter": [1, 3],
    "retry_max_delay": 5,
    "retry_tries": 3,
}


#: ``upload_checksum``'s values.
UploadChecksum = Literal["auto", "off", "crc64nvme", "crc32c", "crc32"]


def _alias(name: str) -> Any:
    return AliasChoices(name, name.lower())


class ClerkSettings(BaseSettings):
    """Everything that configures an ObjectClerk, read from the environment and ``.env``.

    Example::

        settings = ClerkSettings()                      # environment + .env
        settings = ClerkSettings(endpoint_url="http://127.0.0.1:7480", retry_tries=3)
        clerk = ObjectClerk(settings=settings)
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
        # Never echo a rejected value in pydantic's own errors: it may be a credential.
        hide_input_in_errors=True,
    )

    multipart_threshold: int = Field(8 * MiB, ge=1, validation_alias=_alias("MULTIPART_THRESHOLD"))
    s3_client_config: dict[str, Any] = Field(
        default_factory=dict, validation_alias=_alias("S3_CLIENT_CONFIG")
    )
    s3_upload_config: dict[str, Any] = Field(
        default_factory=dict, validation_alias=_alias("S3_UPLOAD_CONFIG")
    )
    s3_download_config: dict[str, Any] = Field(
        default_factory=dict, validation_alias=_alias("S3_DOWNLOAD_CONFIG")
    )
    checksum_retry_config: dict[str, Any] | None = Field(
        None, validation_alias=_alias("CHECKSUM_RETRY_CONFIG")
    )

    endpoint_url: str | None = None
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    use_ssl: bool = False  # for host and port, as object-clerk 1.x
    region: str | None = None
    profile: str | None = None  # a profile of ~/.aws/config and credentials
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    session_token: SecretStr | None = None
    ca_bundle: Path | None = None
    verify_tls: bool = True

    retry_tries: int = 5  # -1: no count limit (the deadline bounds the call)
    retry_delay: float = Field(0.5, ge=0)
    retry_backoff: float = Field(2.0, ge=1)
    retry_jitter: float | tuple[float, float] = (0.0, 0.5)
    retry_max_delay: float = Field(10.0, ge=0)
    retry_deadline: float | None = Field(120.0, gt=0)

    strict_verification: bool = False
    # The full-object CRC uploads send: "auto" (CRC64NVME with awscrt, else CRC32),
    # an algorithm, or "off".
    upload_checksum: UploadChecksum = "auto"

    @field_validator("s3_client_config")
    @classmethod
    def _check_client_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        retries = value.get("retries", {})
        if not isinstance(retries, dict):
            raise ValueError("'retries' must be a JSON object, e.g. {\"max_attempts\": 0}")
        try:
            Config(**{**DEFAULT_CLIENT_CONFIG, **value})
        except Exception as exc:  # botocore raises its own types for bad retry settings
            raise ValueError(f"not a botocore Config: {exc}") from exc
        return value

    @field_validator("s3_upload_config")
    @classmethod
    def _check_upload_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        value = _check_transfer_config(value, _UPLOAD_KEYS | _PART_KEYS)
        discarded = sorted(_PART_KEYS & set(value))
        if discarded:
            warnings.warn(
                f"S3_UPLOAD_CONFIG's {' and '.join(discarded)} ignored: MULTIPART_THRESHOLD sets"
                " both the multipart threshold and the part size",
                UserWarning,
                stacklevel=2,
            )
        return {k: v for k, v in value.items() if k not in _PART_KEYS}

    @field_validator("upload_checksum", mode="before")
    @classmethod
    def _check_upload_checksum(cls, value: object) -> object:
        name = value.lower() if isinstance(value, str) else value
        if name in ("crc64nvme", "crc32c") and name not in ALGORITHMS:
            raise ValueError(f"{name} needs awscrt: pip install 'object-clerk[crt]'")
        return name

    def upload_crc(self) -> Crc | None:
        """The CRC uploads send with their bodies, or None."""
        if self.upload_checksum == "off":
            return None
        if self.upload_checksum == "auto":
            return next(iter(ALGORITHMS.values()))
        return ALGORITHMS[self.upload_checksum]

    @field_validator("retry_tries")
    @classmethod
    def _check_tries(cls, value: int) -> int:
        if value < 1 and value != -1:
            raise ValueError("must be a whole number >= 1, or -1 for no count limit")
        return value

    @field_validator("checksum_retry_config")
    @classmethod
    def _check_checksum_retry(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        unknown = set(value) - set(CHECKSUM_RETRY_DEFAULTS)
        if unknown:
            raise ValueError(
                f"unknown keys {sorted(unknown)}; known: {sorted(CHECKSUM_RETRY_DEFAULTS)}"
            )
        return value

    @field_validator("s3_download_config")
    @classmethod
    def _check_download_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_transfer_config(value, _DOWNLOAD_KEYS)

    @field_validator("retry_jitter")
    @classmethod
    def _check_jitter(cls, value: float | tuple[float, float]) -> float | tuple[float, float]:
        low, high = value if isinstance(value, tuple) else (value, value)
        if low < 0 or high < low:
            raise ValueError("jitter must be >= 0, or a (min, max) range with 0 <= min <= max")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    def resolved_endpoint(self) -> str | None:
        """The endpoint URL: ``endpoint_url``, else built from host, port and use_ssl."""
        if self.endpoint_url:
            return self.endpoint_url
        if self.host:
            scheme = "https" if self.use_ssl else "http"
            host = (
                f"[{self.host}]"
                if ":" in self.host and not self.host.startswith("[")
                else self.host
            )
            return f"{scheme}://{host}:{self.port}" if self.port else f"{scheme}://{host}"
        return None

    def client_config(self) -> Config:
        """botocore Config: the defaults above, overlaid with S3_CLIENT_CONFIG."""
        # Deep copies: botocore rewrites the `retries` dict of a Config in place when it builds
        # a client, which would otherwise alter the defaults and the settings for every clerk.
        merged = copy.deepcopy({**DEFAULT_CLIENT_CONFIG, **self.s3_client_config})
        return Config(**merged)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            tries=self.retry_tries,
            delay=self.retry_delay,
            backoff=self.retry_backoff,
            jitter=self.retry_jitter,
            max_delay=self.retry_max_delay,
            deadline=self.retry_deadline,
        )

    def checksum_retry_policy(self) -> RetryPolicy | None:
        """The policy for checksum mismatches, when CHECKSUM_RETRY_CONFIG is set (else the
        main policy governs them too). Missing keys take object-clerk 1.1.0's defaults."""
        if self.checksum_retry_config is None:
            return None
        values = {**CHECKSUM_RETRY_DEFAULTS, **self.checksum_retry_config}
        jitter = values["retry_jitter"]
        try:
            return RetryPolicy(
                tries=values["retry_tries"],
                delay=values["retry_delay"],
                backoff=values["retry_backoff"],
                jitter=tuple(jitter) if isinstance(jitter, list) else jitter,
                max_delay=values["retry_max_delay"],
                deadline=self.retry_deadline,
            )
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"CHECKSUM_RETRY_CONFIG: {exc.message}", variable="CHECKSUM_RETRY_CONFIG"
            ) from None

    def upload_transfer_config(self) -> TransferConfig:
        """The uploads' settings as boto3's TransferConfig (object-clerk 1.x's
        ``UPLOAD_CONFIG``): MULTIPART_THRESHOLD is both threshold and part size."""
        transfer = self.transfer()
        return TransferConfig(
            multipart_threshold=transfer.multipart_threshold,
            multipart_chunksize=transfer.upload_chunksize,
            max_concurrency=transfer.upload_concurrency,
            use_threads=transfer.upload_concurrency > 1,
        )

    def transfer(self) -> TransferSettings:
        up, down = self.s3_upload_config, self.s3_download_config
        return TransferSettings(
            multipart_threshold=self.multipart_threshold,
            # The threshold is the part size too (object-clerk 1.x), raised to S3's limits
            # when the parts are planned.
            upload_chunksize=self.multipart_threshold,
            upload_concurrency=_concurrency(up),
            download_threshold=int(down.get("multipart_threshold", 8 * MiB)),
            download_chunksize=int(down.get("multipart_chunksize", 8 * MiB)),
            download_concurrency=_concurrency(down),
            # 1 MiB, not TransferConfig's 256 KiB: measured ~5% faster verified reads here.
            io_chunksize=int(down.get("io_chunksize", MiB)),
        )

    def __repr_args__(self) -> Any:
        # SecretStr already masks credentials; keep them out of the repr entirely.
        hidden = {"access_key", "secret_key", "session_token"}
        return [(k, v) for k, v in super().__repr_args__() if k not in hidden]


class TransferSettings:
    """Plain transfer values derived from the settings (no environment access)."""

    __slots__ = (
        "download_chunksize",
        "download_concurrency",
        "download_threshold",
        "io_chunksize",
        "multipart_threshold",
        "upload_chunksize",
        "upload_concurrency",
    )

    def __init__(
        self,
        *,
        multipart_threshold: int,
        upload_chunksize: int,
        upload_concurrency: int,
        download_threshold: int,
        download_chunksize: int,
        download_concurrency: int,
        io_chunksize: int,
    ) -> None:
        self.multipart_threshold = multipart_threshold
        self.upload_chunksize = upload_chunksize
        self.upload_concurrency = upload_concurrency
        self.download_threshold = download_threshold
        self.download_chunksize = download_chunksize
        self.download_concurrency = download_concurrency
        self.io_chunksize = io_chunksize


def _concurrency(config: dict[str, Any]) -> int:
    if config.get("use_threads") is False:
        return 1
    return int(config.get("max_concurrency", 10))


def _check_transfer_config(value: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = set(value) - allowed - _IGNORED_TRANSFER_KEYS
    if unknown:
        raise ValueError(f"unknown TransferConfig keys {sorted(unknown)}; known: {sorted(allowed)}")
    for name in ("multipart_threshold", "multipart_chunksize", "max_concurrency", "io_chunksize"):
        if name in value and (
            not isinstance(value[name], int) or isinstance(value[name], bool) or value[name] < 1
        ):
            raise ValueError(f"{name} must be a whole number >= 1, got {value[name]!r}")
    return value


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    info = ClerkSettings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        if isinstance(first, str):
            return first
    return f"{ENV_PREFIX}{field.upper()}"


def layered(lower: dict[str, Any], higher: dict[str, Any]) -> dict[str, Any]:
    """Settings values from ``higher`` over those from ``lower``.

    The endpoint can be named two ways, ``endpoint_url`` or ``host`` (with ``port``): a
    layer that names it one way replaces the other way from the layers below it, so an
    explicit ``host`` is never overridden by ``OBJECT_CLERK_ENDPOINT_URL``. The dropped
    fields are set to None explicitly, which also beats the environment.
    """
    merged = dict(lower)
    if higher.get("host") is not None:
        merged["endpoint_url"] = None
    if higher.get("endpoint_url") is not None:
        merged["host"] = None
        merged["port"] = None
    merged.update(higher)
    return merged


def check_endpoint(settings: ClerkSettings, *, explicit: set[str] | None = None) -> None:
    """Refuse an endpoint named both ways in one place: which one was meant is unknowable.

    ``explicit`` names the fields given as arguments, for the error's wording.
    """
    if settings.endpoint_url is None or (settings.host is None and settings.port is None):
        return
    other = "host" if settings.host is not None else "port"
    explicit = explicit or set()
    names = [name if name in explicit else env_name(name) for name in ("endpoint_url", other)]
    raise ConfigurationError(
        f"both {names[0]} and {names[1]} are given: name the endpoint one way, either"
        " endpoint_url, or host and port",
        variable=names[0],
    )


def load_settings(**overrides: Any) -> ClerkSettings:
    """Create settings from the environment and ``.env``, with ``overrides`` on top.

    Raises:
        ConfigurationError: naming the variable whose value is invalid.
    """
    known = set(ClerkSettings.model_fields)
    for info in ClerkSettings.model_fields.values():
        alias = info.validation_alias
        known.update(a for a in getattr(alias, "choices", [alias]) if isinstance(a, str))
    unknown = sorted(set(overrides) - known)
    if unknown:
        # The environment may hold anything; an argument naming no setting is a mistake.
        raise ConfigurationError(
            f"unknown setting(s) {unknown}; known: {sorted(ClerkSettings.model_fields)}"
        )
    explicit = {name for name, value in overrides.items() if value is not None}
    try:
        settings = ClerkSettings(**layered({}, overrides))
    except ValidationError as exc:
        raise _configuration_error(exc, overrides) from None
    except _PydanticSettingsError as exc:
        # Raised for malformed JSON in a dict-valued variable; its text names the field.
        field = next((f for f in ClerkSettings.model_fields if f'"{f}"' in str(exc)), None)
        variable = env_name(field) if field else None
        raise ConfigurationError(
            f"{variable or 'a setting'} is not valid JSON: {_json_hint(field)}", variable=variable
        ) from None
    check_endpoint(settings, explicit=explicit)
    return settings


def _configuration_error(exc: ValidationError, overrides: dict[str, Any]) -> ConfigurationError:
    problems = []
    first_variable = None
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        field = field.lower() if field.lower() in ClerkSettings.model_fields else field
        variable = field if field in overrides else env_name(field)
        first_variable = first_variable or variable
        shown = _shown(field, error.get("input"))
        problems.append(f"{variable}: {error['msg']}{shown}")
    return ConfigurationError("invalid settings: " + "; ".join(problems), variable=first_variable)


def _shown(field: str, value: object) -> str:
    """The rejected value, for the error message, when it cannot hold a secret: numbers and
    plain words only. Never a credential, a dict (a proxy URL with a password, say) or text
    with userinfo."""
    if "key" in field or "token" in field:
        return ""
    if isinstance(value, (int, float)) or (
        isinstance(value, str) and len(value) <= 40 and "@" not in value and "//" not in value
    ):
        return f" (got {value!r})"
    return ""


def _json_hint(field: str | None) -> str:
    if field == "s3_client_config":
        return f"expected a JSON object such as {json.dumps(DEFAULT_CLIENT_CONFIG)}"
    if field in ("s3_upload_config", "s3_download_config"):
        return 'expected a JSON object such as {"max_concurrency": 10}'
    if field == "checksum_retry_config":
        return f"expected a JSON object such as {json.dumps(CHECKSUM_RETRY_DEFAULTS)}"
    return "expected a number, or [min, max] for a jitter range"
