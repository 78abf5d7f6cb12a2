from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.perfdoc import SECTIONS, SKELETON, fmt, replace_section, table, write_section


def test_replacing_a_section_keeps_every_other_section_as_it_was() -> None:
    text = replace_section(SKELETON, "unet328", "batch 8: 42 frames/s")
    text = replace_section(text, "proxy", "| a |\n|---|")
    text = replace_section(text, "proxy", "new proxy figures")
    assert "batch 8: 42 frames/s" in text
    assert "new proxy figures" in text
    assert "| a |" not in text
    assert text.count("<!-- bench:proxy -->") == 1


def test_a_section_not_in_the_file_is_added_at_the_end_under_its_heading() -> None:
    text = replace_section("# Performance\n\nhand-written notes\n", "server", "figures")
    assert text.startswith("# Performance\n\nhand-written notes\n")
    section = "<!-- bench:server -->\nfigures\n<!-- /bench:server -->\n"
    assert text.endswith(f"## Server: sprite engine and JPEG splicing\n\n{section}")
    assert "## custom\n" in replace_section("", "custom", "x", title="custom")


def test_a_section_without_its_closing_marker_or_with_a_bad_key_is_refused() -> None:
    with pytest.raises(ValueError, match="closing marker"):
        replace_section("<!-- bench:proxy -->\nhalf", "proxy", "x")
    with pytest.raises(ValueError, match="lowercase"):
        replace_section("", "Proxy Figures", "x")


def test_writing_a_section_creates_the_document_with_every_section_in_order(tmp_path: Path) -> None:
    path = tmp_path / "docs" / "performance.md"
    write_section(path, "idle", "16 KiB each")
    text = path.read_text()
    positions = [text.index(f"<!-- bench:{key} -->") for key, _ in SECTIONS]
    assert positions == sorted(positions)
    assert "16 KiB each" in text
    write_section(path, "machine", "2 cores")
    assert "16 KiB each" in path.read_text()


def test_tables_align_numbers_right_and_show_missing_values_as_dashes() -> None:
    text = table(["name", "frames/s"], [("proxy", 1234.5), ("direct", None), ("a|b", float("nan"))])
    assert text.splitlines() == [
        "| name | frames/s |",
        "|---|---:|",
        "| proxy | 1,234 |",
        "| direct | – |",
        "| a\\|b | – |",
    ]


def test_numbers_keep_three_significant_digits() -> None:
    assert [fmt(v) for v in (0.0123456, 1.23456, 123.456, 98432.0, 0.0, None)] == [
        "0.0123",
        "1.23",
        "123",
        "98,432",
        "0",
        "–",
    ]
