"""Unit tests for object_clerk.settings: environment, .env, overrides, validation, secrets."""

from __future__ import annotations

import json
import os
import re

import pytest

import object_clerk
from object_clerk import ConfigurationError
from object_clerk.settings import ClerkSettings, load_settings

MIB = 1024 * 1024
_OUR_VARS = re.compile(r"^(OBJECT_CLERK_.*|MULTIPART_THRESHOLD|S3_.*_CONFIG)$", re.IGNORECASE)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No inherited variables and no stray .env: each test starts from the defaults."""
    for name in list(os.environ):
        if _OUR_VARS.match(name):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------ defaults


def test_defaults():
    settings = load_settings()
    assert settings.multipart_threshold == 8 * MIB
    assert settings.retry_tries == 5
    assert settings.endpoint_url is None
    assert settings.resolved_endpoint() is None
    config = settings.client_config()
    assert config.retries == {"max_attempts": 0}
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"


def test_default_retry_policy_comes_from_settings():
    policy = load_settings().retry_policy()
    assert policy.tries == 5
    assert policy.delay == 0.5
    assert policy.backoff == 2.0
    assert policy.jitter == (0.0, 0.5)


def test_default_transfer_settings():
    transfer = load_settings().transfer()
    assert transfer.multipart_threshold == 8 * MIB
    assert transfer.upload_chunksize == 8 * MIB
    assert transfer.download_chunksize == 8 * MIB
    assert transfer.upload_concurrency == 10
    assert transfer.download_concurrency == 10


# ------------------------------------------------------------ variables honoured


def test_multipart_threshold_variable(monkeypatch):
    monkeypatch.setenv("MULTIPART_THRESHOLD", "12345")
    settings = load_settings()
    assert settings.multipart_threshold == 12345
    assert settings.transfer().multipart_threshold == 12345


def test_client_config_is_merged_over_defaults(monkeypatch):
    monkeypatch.setenv("S3_CLIENT_CONFIG", json.dumps({"connect_timeout": 5, "region_name": "x"}))
    config = load_settings().client_config()
    assert config.connect_timeout == 5  # the user's key wins
    assert config.region_name == "x"
    assert config.read_timeout == 60  # others keep the defaults
    assert config.retries == {"max_attempts": 0}
    assert config.request_checksum_calculation == "when_required"


def test_client_config_user_retries_win(monkeypatch):
    monkeypatch.setenv("S3_CLIENT_CONFIG", '{"retries": {"max_attempts": 3}}')
    assert load_settings().client_config().retries == {"max_attempts": 3}


def test_upload_and_download_configs_are_both_honoured(monkeypatch):
    monkeypatch.setenv("MULTIPART_THRESHOLD", str(16 * MIB))
    monkeypatch.setenv("S3_UPLOAD_CONFIG", json.dumps({"max_concurrency": 3}))
    monkeypatch.setenv(
        "S3_DOWNLOAD_CONFIG",
        json.dumps(
            {
                "multipart_chunksize": 32 * MIB,
                "max_concurrency": 7,
                "multipart_threshold": 64 * MIB,
                "io_chunksize": 4096,
            }
        ),
    )
    transfer = load_settings().transfer()
    assert transfer.upload_chunksize == 16 * MIB  # MULTIPART_THRESHOLD: threshold and part size
    assert transfer.upload_concurrency == 3
    assert transfer.download_chunksize == 32 * MIB
    assert transfer.download_concurrency == 7
    assert transfer.download_threshold == 64 * MIB
    assert transfer.io_chunksize == 4096


@pytest.mark.parametrize(
    "keys", [["multipart_chunksize"], ["multipart_threshold", "multipart_chunksize"]]
)
def test_upload_part_keys_are_discarded_with_a_warning_naming_them(monkeypatch, keys):
    """MULTIPART_THRESHOLD sets both threshold and part size (object-clerk 1.x): the two
    S3_UPLOAD_CONFIG keys are ignored, and a warning names them."""
    monkeypatch.setenv("MULTIPART_THRESHOLD", str(5 * MIB))
    monkeypatch.setenv("S3_UPLOAD_CONFIG", json.dumps({key: 64 * MIB for key in keys}))
    with pytest.warns(UserWarning, match=" and ".join(sorted(keys))):
        settings = load_settings()
    transfer = settings.transfer()
    assert (transfer.multipart_threshold, transfer.upload_chunksize) == (5 * MIB, 5 * MIB)


def test_checksum_retry_config_is_read_and_checked(monkeypatch):
    monkeypatch.setenv("CHECKSUM_RETRY_CONFIG", json.dumps({"retry_tries": 7}))
    policy = load_settings().checksum_retry_policy()
    assert policy is not None and (policy.tries, policy.delay, policy.jitter) == (7, 1, (1, 3))
    monkeypatch.setenv("CHECKSUM_RETRY_CONFIG", json.dumps({"retries": 7}))
    with pytest.raises(ConfigurationError, match="CHECKSUM_RETRY_CONFIG"):
        load_settings()
    monkeypatch.delenv("CHECKSUM_RETRY_CONFIG")
    assert load_settings().checksum_retry_policy() is None  # the main policy governs


def test_use_threads_false_means_one_worker(monkeypatch):
    monkeypatch.setenv("S3_UPLOAD_CONFIG", '{"use_threads": false, "max_concurrency": 9}')
    assert load_settings().transfer().upload_concurrency == 1


def test_retry_tries_variable(monkeypatch):
    monkeypatch.setenv("OBJECT_CLERK_RETRY_TRIES", "3")
    settings = load_settings()
    assert settings.retry_tries == 3
    assert settings.retry_policy().tries == 3


def test_retry_jitter_number(monkeypatch):
    monkeypatch.setenv("OBJECT_CLERK_RETRY_JITTER", "0.25")
    settings = load_settings()
    assert settings.retry_jitter == 0.25
    assert settings.retry_policy().jitter == 0.25


def test_retry_jitter_range(monkeypatch):
    monkeypatch.setenv("OBJECT_CLERK_RETRY_JITTER", "[1, 3]")
    settings = load_settings()
    assert tuple(settings.retry_jitter) == (1.0, 3.0)
    assert settings.retry_policy().jitter == (1.0, 3.0)


def test_endpoint_variable(monkeypatch):
    monkeypatch.setenv("OBJECT_CLERK_ENDPOINT_URL", "http://127.0.0.1:7480")
    assert load_settings().resolved_endpoint() == "http://127.0.0.1:7480"


# --------------------------------------------------------------- .env precedence


def test_dotenv_file_in_cwd_is_read(clean_env):
    (clean_env / ".env").write_text("MULTIPART_THRESHOLD=1111\nOBJECT_CLERK_RETRY_TRIES=7\n")
    settings = load_settings()
    assert settings.multipart_threshold == 1111
    assert settings.retry_tries == 7


def test_environment_overrides_dotenv(clean_env, monkeypatch):
    (clean_env / ".env").write_text("MULTIPART_THRESHOLD=1111\nOBJECT_CLERK_RETRY_TRIES=7\n")
    monkeypatch.setenv("MULTIPART_THRESHOLD", "2222")
    settings = load_settings()
    assert settings.multipart_threshold == 2222
    assert settings.retry_tries == 7  # still from .env


def test_overrides_win_over_environment_and_dotenv(clean_env, monkeypatch):
    (clean_env / ".env").write_text("MULTIPART_THRESHOLD=1111\nOBJECT_CLERK_RETRY_TRIES=7\n")
    monkeypatch.setenv("MULTIPART_THRESHOLD", "2222")
    monkeypatch.setenv("OBJECT_CLERK_RETRY_TRIES", "8")
    settings = load_settings(multipart_threshold=3333, retry_tries=2)
    assert settings.multipart_threshold == 3333
    assert settings.retry_tries == 2


def test_settings_are_read_at_creation_not_import(monkeypatch):
    assert object_clerk.load_settings is load_settings  # the package is already imported
    before = load_settings()
    monkeypatch.setenv("OBJECT_CLERK_RETRY_TRIES", "9")
    monkeypatch.setenv("MULTIPART_THRESHOLD", "4242")
    after = load_settings()
    assert (before.retry_tries, before.multipart_threshold) == (5, 8 * MIB)
    assert (after.retry_tries, after.multipart_threshold) == (9, 4242)


# -------------------------------------------------------------- invalid values


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OBJECT_CLERK_RETRY_TRIES", "0"),
        ("OBJECT_CLERK_RETRY_TRIES", "-2"),
        ("OBJECT_CLERK_RETRY_TRIES", "abc"),
        ("MULTIPART_THRESHOLD", "0"),
        ("S3_CLIENT_CONFIG", "{bad json"),
        ("S3_CLIENT_CONFIG", '{"no_such_option": 1}'),
        ("S3_UPLOAD_CONFIG", '{"bogus": 1}'),
        ("S3_UPLOAD_CONFIG", "{not json"),
        ("S3_DOWNLOAD_CONFIG", '{"multipart_chunksize": 0}'),
        ("OBJECT_CLERK_ENDPOINT_URL", "ftp://x"),
        ("OBJECT_CLERK_RETRY_JITTER", "[3, 1]"),
        ("OBJECT_CLERK_RETRY_DEADLINE", "0"),
        ("OBJECT_CLERK_PORT", "70000"),
    ],
)
def test_invalid_variable_raises_configuration_error_naming_it(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert info.value.variable == variable
    assert variable in str(info.value)


def test_invalid_override_names_the_argument():
    with pytest.raises(ConfigurationError) as info:
        load_settings(retry_tries=0)
    assert info.value.variable == "retry_tries"
    assert "retry_tries" in str(info.value)


def test_configuration_error_is_a_value_error(monkeypatch):
    monkeypatch.setenv("MULTIPART_THRESHOLD", "-5")
    with pytest.raises(ValueError):
        load_settings()


# ----------------------------------------------------------------------- secrets

SECRET = "s3cr3t-value-XYZ"
ACCESS = "AKIA-LEAKCHECK"


def test_secrets_never_appear_in_repr_or_str(monkeypatch):
    monkeypatch.setenv("OBJECT_CLERK_SECRET_KEY", SECRET)
    monkeypatch.setenv("OBJECT_CLERK_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("OBJECT_CLERK_SESSION_TOKEN", "tok-LEAKCHECK")
    settings = load_settings()
    # The values are loaded...
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == SECRET
    assert settings.access_key is not None
    assert settings.access_key.get_secret_value() == ACCESS
    # ...but never shown.
    for text in (repr(settings), str(settings), f"{settings}"):
        assert SECRET not in text
        assert ACCESS not in text
        assert "tok-LEAKCHECK" not in text


def test_invalid_settings_error_does_not_echo_env_secret(monkeypatch):
    monkeypatch.setenv("OBJECT_CLERK_SECRET_KEY", SECRET)
    monkeypatch.setenv("OBJECT_CLERK_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("OBJECT_CLERK_RETRY_TRIES", "0")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert SECRET not in str(info.value)
    assert ACCESS not in str(info.value)


@pytest.mark.parametrize("field", ["secret_key", "access_key", "session_token"])
def test_invalid_secret_value_is_not_echoed(field):
    with pytest.raises(ConfigurationError) as info:
        load_settings(**{field: [SECRET]})  # not a string: invalid
    assert info.value.variable == field
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


def test_direct_settings_error_with_secret_does_not_contain_it():
    with pytest.raises(ValueError) as info:
        ClerkSettings(secret_key=SECRET, access_key=ACCESS, retry_tries=0)
    assert SECRET not in str(info.value)
    assert ACCESS not in str(info.value)


# ------------------------------------------------------------- resolved_endpoint


def test_resolved_endpoint_from_host_port_without_ssl():
    settings = load_settings(host="h", port=9000, use_ssl=False)
    assert settings.resolved_endpoint() == "http://h:9000"


def test_resolved_endpoint_defaults_to_http_as_object_clerk_1():
    """use_ssl defaults to False for host and port, as in object-clerk 1.x."""
    assert load_settings(host="h", port=9000).resolved_endpoint() == "http://h:9000"
    assert load_settings(host="h", port=9000, use_ssl=True).resolved_endpoint() == (
        "https://h:9000"
    )


def test_resolved_endpoint_host_without_port():
    settings = load_settings(host="s3.example.org", use_ssl=True)
    assert settings.resolved_endpoint() == "https://s3.example.org"


def test_resolved_endpoint_brackets_ipv6_hosts():
    settings = load_settings(host="::1", port=7480, use_ssl=False)
    assert settings.resolved_endpoint() == "http://[::1]:7480"


def test_endpoint_named_both_ways_is_refused_naming_both():
    """One endpoint, two ways to name it: given both at once, which was meant is unknown."""
    with pytest.raises(ConfigurationError, match="both endpoint_url and host"):
        load_settings(endpoint_url="https://e.example:1", host="h", port=9000)
    with pytest.raises(ConfigurationError, match="both endpoint_url and port"):
        load_settings(endpoint_url="https://e.example:1", port=9000)


def test_endpoint_named_both_ways_in_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("OBJECT_CLERK_ENDPOINT_URL", "https://e.example:1")
    monkeypatch.setenv("OBJECT_CLERK_HOST", "h")
    with pytest.raises(ConfigurationError, match="OBJECT_CLERK_ENDPOINT_URL and OBJECT_CLERK_HOST"):
        load_settings()


def test_explicit_host_replaces_the_environments_endpoint_url(monkeypatch):
    """An explicit host (with its port) wins whole over OBJECT_CLERK_ENDPOINT_URL, and an
    explicit endpoint_url over OBJECT_CLERK_HOST and OBJECT_CLERK_PORT."""
    monkeypatch.setenv("OBJECT_CLERK_ENDPOINT_URL", "https://env.example:1")
    settings = load_settings(host="h", port=9000, use_ssl=False)
    assert settings.resolved_endpoint() == "http://h:9000"
    monkeypatch.delenv("OBJECT_CLERK_ENDPOINT_URL")
    monkeypatch.setenv("OBJECT_CLERK_HOST", "envhost")
    monkeypatch.setenv("OBJECT_CLERK_PORT", "1234")
    assert load_settings(endpoint_url="https://e.example:2").resolved_endpoint() == (
        "https://e.example:2"
    )


def test_precedence_arguments_then_settings_then_environment(monkeypatch):
    monkeypatch.setenv("OBJECT_CLERK_RETRY_TRIES", "3")
    given = ClerkSettings(_env_file=None, retry_tries=2, endpoint_url="http://127.0.0.1:1")
    assert object_clerk.ObjectClerk(settings=given).settings.retry_tries == 2
    assert object_clerk.ObjectClerk(settings=given, retry_tries=7).settings.retry_tries == 7
    moved = object_clerk.ObjectClerk(settings=given, host="127.0.0.2", port=9000, use_ssl=False)
    assert moved.client.meta.endpoint_url == "http://127.0.0.2:9000"
    assert moved.settings.retry_tries == 2


def test_resolved_endpoint_host_from_environment(monkeypatch):
    monkeypatch.setenv("OBJECT_CLERK_HOST", "rgw")
    monkeypatch.setenv("OBJECT_CLERK_PORT", "7480")
    monkeypatch.setenv("OBJECT_CLERK_USE_SSL", "false")
    assert load_settings().resolved_endpoint() == "http://rgw:7480"


def test_upload_checksum_setting(monkeypatch):
    from object_clerk.checksums import ALGORITHMS

    monkeypatch.setenv("OBJECT_CLERK_UPLOAD_CHECKSUM", "CRC32")
    assert ClerkSettings(_env_file=None).upload_crc() is ALGORITHMS["crc32"]
    assert ClerkSettings(_env_file=None, upload_checksum="off").upload_crc() is None
    auto = ClerkSettings(_env_file=None, upload_checksum="auto").upload_crc()
    assert auto is next(iter(ALGORITHMS.values()))
    with pytest.raises(ConfigurationError, match=r"upload_checksum.*crc64nvme"):
        load_settings(upload_checksum="sha256")
