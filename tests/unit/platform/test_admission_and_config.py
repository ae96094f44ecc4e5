import pytest

from zhuge.config import Settings
from zhuge.errors import ConfigError


def test_settings_from_env(tmp_path):
    s = Settings.from_env(
        {"ZHUGE_HOME": str(tmp_path), "ZHUGE_LEASE_SECONDS": "4", "ZHUGE_HEARTBEAT_SECONDS": "1"}
    )
    assert s.home == tmp_path and s.lease_seconds == 4.0
    assert s.database_url == f"sqlite:///{tmp_path / 'zhuge.db'}"
    assert s.artifacts_root == (tmp_path / "artifacts").as_uri()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ZHUGE_LEASE_SECONDS": "soon"}, "not a number"),
        ({"ZHUGE_LEASE_SECONDS": "-1"}, "must be positive"),
        ({"ZHUGE_PORT": "http"}, "not a port number"),
        ({"ZHUGE_LEASE_SECONDS": "2", "ZHUGE_HEARTBEAT_SECONDS": "5"}, "shorter than the lease"),
    ],
)
def test_bad_settings_say_what_is_wrong(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
