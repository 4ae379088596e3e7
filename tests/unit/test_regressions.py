"""Regression tests for defects found in review of the first version."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from object_clerk import (
    ClerkSettings,
    ConfigurationError,
    RequestRejectedError,
    RetryPolicy,
    load_settings,
    parse_etag,
)
from object_clerk.errors import translate_error, translated


@pytest.mark.parametrize(
    "value",
    [
        '{"retries": {"mode": "bogus"}}',
        '{"retries": {"bogus": 1}}',
        '{"retries": {"max_attempts": -1}}',
        '{"retries": 5}',
    ],
)
def test_bad_retry_section_in_client_config_names_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Any botocore-invalid S3_CLIENT_CONFIG gives ConfigurationError naming the variable."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("S3_CLIENT_CONFIG", value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert info.value.variable == "S3_CLIENT_CONFIG"
    assert "S3_CLIENT_CONFIG" in str(info.value)


def test_translated_leaves_foreign_errors_and_their_cause_untouched() -> None:
    """A programming error inside translated() comes out unchanged, cause included."""
    with pytest.raises(KeyError) as info, translated("op"):
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError as exc:
            raise KeyError("k") from exc
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_jitter_accepts_a_list_and_refuses_other_shapes() -> None:
    """A [min, max] list works like a tuple; three values or NaN are ConfigurationErrors."""
    assert RetryPolicy(jitter=[0.0, 0.5]).jitter == (0.0, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="retry_jitter"):
        RetryPolicy(jitter=(1, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="retry_jitter"):
        RetryPolicy(jitter=(float("nan"), 1.0))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("delay", float("nan")),
        ("delay", float("inf")),
        ("backoff", float("nan")),
        ("deadline", float("nan")),
        ("max_delay", float("nan")),
    ],
)
def test_non_finite_retry_values_are_refused(field: str, value: float) -> None:
    """NaN or infinite delays would crash time.sleep later: refused up front."""
    with pytest.raises(ConfigurationError):
        RetryPolicy(**{field: value})


def test_settings_validation_error_never_echoes_a_credential() -> None:
    """Even a direct ClerkSettings(...) with a wrongly typed secret keeps it out of the error."""
    with pytest.raises(Exception) as info:
        ClerkSettings(secret_key=["s3cr3t-value"])  # type: ignore[arg-type]
    assert "s3cr3t-value" not in str(info.value)


def test_501_not_implemented_is_permanent() -> None:
    """501 is a store saying 'never', not a transient 5xx."""
    error = ClientError(
        {
            "Error": {"Code": "NotImplemented", "Message": "m"},
            "ResponseMetadata": {"HTTPStatusCode": 501},
        },
        "PutObject",
    )
    assert isinstance(translate_error(error, operation="PutObject"), RequestRejectedError)


@pytest.mark.parametrize(
    "etag", ['"' + "a" * 32, "a" * 32 + '"', "a" * 32 + "-0", "a" * 32 + "-01"]
)
def test_malformed_etags_are_not_md5(etag: str) -> None:
    """One-sided quotes and a zero or zero-padded part count are not MD5 ETags."""
    assert parse_etag(etag) is None


def test_building_a_client_does_not_alter_the_default_client_config() -> None:
    """botocore rewrites a Config's `retries` dict in place when it builds a client; the
    clerk's defaults and settings must not be affected."""
    import boto3

    from object_clerk.settings import DEFAULT_CLIENT_CONFIG

    before = dict(DEFAULT_CLIENT_CONFIG["retries"])
    settings = ClerkSettings(_env_file=None, s3_client_config={"retries": {"max_attempts": 2}})
    for config in (ClerkSettings(_env_file=None).client_config(), settings.client_config()):
        boto3.client("s3", region_name="us-east-1", config=config)
    assert DEFAULT_CLIENT_CONFIG["retries"] == before
    assert settings.s3_client_config == {"retries": {"max_attempts": 2}}


def test_parameter_errors_never_quote_values() -> None:
    """botocore's ParamValidationError quotes values (an SSE-C key, say); ours does not."""
    from botocore.exceptions import ParamValidationError

    report = (
        "Invalid type for parameter SSECustomerKey, value: 987654321-secret-key, "
        "type: <class 'int'>, valid types: <class 'str'>"
    )
    error = translate_error(ParamValidationError(report=report), operation="PutObject")
    assert "SSECustomerKey" in str(error)
    assert "987654321-secret-key" not in str(error)
