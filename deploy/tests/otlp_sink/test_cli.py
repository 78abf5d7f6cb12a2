"""The sink's command line."""

from __future__ import annotations

import pytest
from lipsync_otlp_sink.cli import parse_settings
from lipsync_otlp_sink.sink import Settings


def test_the_defaults_are_jaegers_ports_on_every_interface() -> None:
    assert parse_settings([]) == Settings(host="0.0.0.0", otlp_port=4317, http_port=16686, max_spans=100_000)


def test_flags_set_every_field() -> None:
    argv = ["--host", "127.0.0.1", "--otlp-port", "1", "--http-port", "2", "--max-spans", "3"]
    assert parse_settings(argv) == Settings(host="127.0.0.1", otlp_port=1, http_port=2, max_spans=3)


def test_a_store_of_no_spans_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(["--max-spans", "0"])
    assert exit_info.value.code == 2
    assert "--max-spans must be at least 1" in capsys.readouterr().err
