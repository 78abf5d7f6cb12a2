from __future__ import annotations

from pathlib import Path

import pytest

from lipsync_server.settings import SettingsError, settings_from_args


def test_defaults_match_the_documented_ports() -> None:
    settings = settings_from_args([], environ={})
    assert (settings.port, settings.metrics_port, settings.jpeg_quality) == (50051, 9464, 85)
    assert settings.models_dir is None
    assert not settings.admin


def test_the_environment_is_read_and_a_flag_beats_it(tmp_path: Path) -> None:
    env = {"LIPSYNC_PORT": "6000", "LIPSYNC_MODELS_DIR": str(tmp_path), "LIPSYNC_MODELS": "a, b"}
    assert settings_from_args([], environ=env).port == 6000
    assert settings_from_args([], environ=env).models == ("a", "b")
    assert settings_from_args(["--port", "7000", "--model", "c"], environ=env).port == 7000
    assert settings_from_args(["--model", "c"], environ=env).models == ("c",)
    assert settings_from_args([], environ=env).models_dir == tmp_path


def test_admin_has_one_name_and_polarity_in_flags_and_environment() -> None:
    assert not settings_from_args(["--no-admin"], environ={}).admin
    assert not settings_from_args([], environ={"LIPSYNC_ADMIN": "false"}).admin
    assert settings_from_args(["--admin"], environ={"LIPSYNC_ADMIN": "false"}).admin


def test_every_invalid_setting_is_reported_in_one_error() -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from_args(["--port", "70000", "--jpeg-quality", "0", "--log-format", "xml"], environ={})
    message = str(caught.value)
    assert "--port 70000" in message
    assert "--jpeg-quality 0" in message
    assert "--log-format 'xml'" in message
