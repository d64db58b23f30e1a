from pathlib import Path

import pytest

from sync_platform.core.config import ConfigError, CrmSyncConfig, load_sync_config


@pytest.mark.parametrize(
    "minutes, cron",
    [(1, "* * * * *"), (5, "*/5 * * * *"), (60, "0 * * * *"), (360, "0 */6 * * *"), (1440, "0 0 * * *")],
)
def test_intervals_from_a_minute_to_a_day_become_crons(minutes, cron):
    assert CrmSyncConfig(schedule_minutes=minutes).cron == cron


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "crms:\n  hubspot:\n    schedule_minutes: 0\n",
            "crms.hubspot.schedule_minutes: Value error, must be between 1",
        ),
        ("crms:\n  hubspot:\n    schedule_minutes: 2880\n", "crms.hubspot.schedule_minutes"),
        ("crms:\n  hubspot:\n    schedule_minutes: 7\n", "does not divide an hour or a day evenly"),
        ("crms:\n  pipedrive: {}\n", "crms.pipedrive"),
        (
            "crms:\n  salesforce:\n    look_back: 10\n",
            "crms.salesforce.look_back: Extra inputs are not permitted",
        ),
        ("crms: [unclosed\n", "not valid YAML"),
        (
            "crms:\n  dynamics:\n    change_tracking: sometimes\n",
            "crms.dynamics.change_tracking: Input should be 'auto'",
        ),
    ],
)
def test_malformed_config_fails_at_load_naming_file_and_field(tmp_path: Path, body, message):
    path = tmp_path / "sync.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_sync_config(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_the_committed_config_is_valid():
    config = load_sync_config()
    assert set(config.crms) == {"salesforce", "hubspot", "dynamics"}


def test_audit_retention_defaults_to_400_days_and_must_be_positive(tmp_path: Path):
    assert load_sync_config(tmp_path / "absent.yaml").audit.retention_days == 400
    assert load_sync_config().audit.retention_days == 400
    path = tmp_path / "sync.yaml"
    path.write_text("audit:\n  retention_days: 0\n")
    with pytest.raises(ConfigError, match="audit.retention_days"):
        load_sync_config(path)
