"""Settings from flags and the environment: the seed's spellings, precedence, validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lipsync_proxy.settings import Settings, SettingsError, checkout_static_dir, settings_from_args

README = Path(__file__).resolve().parents[1] / "README.md"
#: The README's settings table: each flag's double-dash spelling and its environment variable.
DOCUMENTED = re.findall(r"^\| (?:`-[\w-]+`, )?`(--[\w-]+)` \| `(\w+)` \|", README.read_text(), re.MULTILINE)


def test_the_defaults_are_the_seeds() -> None:
    settings = settings_from_args([], environ={})
    assert settings.ws_port == 8086
    assert settings.grpc_addr == "localhost:50051"
    assert settings.max_inflight == 8
    assert settings.timeout_s == 5.0
    assert settings.max_message_size == 1 << 20
    assert settings.ping_interval_s == 20.0
    assert settings.allowed_origins == ()
    assert settings.static_dir == checkout_static_dir()
    assert not settings.quiet_frames


def test_the_checkout_static_dir_is_the_repositorys() -> None:
    assert checkout_static_dir() == Path(__file__).resolve().parents[3] / "static"


@pytest.mark.parametrize("flag", ["-ws-port", "--ws-port"])
def test_the_seeds_single_dash_flags_work_as_do_the_double_dash_ones(flag: str) -> None:
    settings = settings_from_args([flag, "9000", flag.replace("ws-port", "grpc-addr"), "h:1"], environ={})
    assert (settings.ws_port, settings.grpc_addr) == (9000, "h:1")


def test_the_environment_is_read_and_a_flag_beats_it(tmp_path: Path) -> None:
    env = {
        "WS_PORT": "7000",
        "GRPC_ADDR": "dns:///lipsync-server-headless:50051",
        "STATIC_DIR": str(tmp_path),
        "PROXY_ALLOWED_ORIGINS": "https://a.example, https://b.example:8443",
        "PROXY_MAX_INFLIGHT": "4",
        "PROXY_TIMEOUT": "2.5",
        "PROXY_QUIET_FRAMES": "true",
        "PROXY_LOG_FORMAT": "JSON",
    }
    settings = settings_from_args([], environ=env)
    assert settings.ws_port == 7000
    assert settings.grpc_addr == "dns:///lipsync-server-headless:50051"
    assert settings.static_dir == tmp_path
    assert settings.allowed_origins == ("https://a.example", "https://b.example:8443")
    assert (settings.max_inflight, settings.timeout_s, settings.quiet_frames) == (4, 2.5, True)
    assert settings.log_format == "json"
    flagged = settings_from_args(["-ws-port", "7100", "--max-inflight", "16", "--timeout", "1"], environ=env)
    assert (flagged.ws_port, flagged.max_inflight, flagged.timeout_s) == (7100, 16, 1.0)


def outcome(argv: list[str], environ: dict[str, str]) -> Settings | str:
    try:
        return settings_from_args(argv, environ)
    except SettingsError:
        return "invalid"


@pytest.mark.parametrize(("flag", "variable"), DOCUMENTED)
def test_each_variable_the_readme_names_sets_what_its_flag_sets(flag: str, variable: str) -> None:
    argv = [flag] if flag == "--quiet-frames" else [flag, "some-value"]
    value = "1" if flag == "--quiet-frames" else "some-value"
    assert outcome([], {variable: value}) == outcome(argv, {})
    assert outcome([], {variable: value}) != outcome([], {})


def test_a_value_the_environment_gives_is_reported_under_its_variable() -> None:
    with pytest.raises(SettingsError, match="PROXY_SESSION_TIMEOUT 'soon': not a number"):
        settings_from_args([], environ={"PROXY_SESSION_TIMEOUT": "soon"})


def test_quiet_frames_is_a_switch() -> None:
    assert settings_from_args(["--quiet-frames"], environ={}).quiet_frames
    assert not settings_from_args([], environ={"PROXY_QUIET_FRAMES": "0"}).quiet_frames


def test_every_invalid_setting_is_reported_in_one_message(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as raised:
        settings_from_args(
            [
                "--ws-port",
                "70000",
                "--grpc-addr",
                "nohost",
                "--static-dir",
                str(tmp_path / "missing"),
                "--max-inflight",
                "many",
                "--timeout",
                "0",
                "--log-level",
                "loud",
                "--allowed-origins",
                "example.com",
            ],
            environ={"PROXY_QUIET_FRAMES": "maybe"},
        )
    message = str(raised.value)
    assert "\n" not in message
    for problem in (
        "--ws-port 70000: must be 0..65535",
        "--grpc-addr 'nohost': 'nohost': expected host:port",
        "missing: not a directory",
        "--max-inflight 'many': not an integer",
        "--timeout 0.0: must be > 0 seconds",
        "--log-level 'loud'",
        "--allowed-origins 'example.com': must be * or scheme://host[:port]",
        "PROXY_QUIET_FRAMES 'maybe'",
    ):
        assert problem in message


def test_the_global_cap_cannot_be_below_the_per_connection_one() -> None:
    assert Settings(max_inflight=8, max_inflight_total=4).problems() == [
        "--max-inflight-total 4: must be at least --max-inflight (8)"
    ]


def test_the_batch_size_is_set_by_flag_or_environment_and_checked() -> None:
    assert settings_from_args([], environ={}).max_batch == 16
    env = {"PROXY_MAX_BATCH": "1"}
    assert settings_from_args([], environ=env).max_batch == 1
    assert settings_from_args(["--max-batch", "32"], environ=env).max_batch == 32
    with pytest.raises(SettingsError) as raised:
        settings_from_args(["--max-batch", "0"], environ={})
    assert "--max-batch 0: must be 1..256 (1: no batches)" in str(raised.value)


def test_the_removed_carrier_flags_are_refused() -> None:
    for flag in ("--backend-streams", "--grpc-batches"):
        with pytest.raises(SystemExit):
            settings_from_args([flag, "1"], environ={})
