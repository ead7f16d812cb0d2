"""`scripts/readme-settings` (`python -m seedcore._settings_table [README] [--check]`) in process, on a README of
the test's own: it rewrites only the table between the markers, `--check` says a stale table on stderr with
exit code 1 and changes nothing, and a file without the markers is refused naming them."""

from __future__ import annotations

import os
import runpy
import sys

import pytest

from seedcore import _settings_table
from seedcore._settings_table import BEGIN, END, main

pytestmark = pytest.mark.unit

HEAD = "# A project\n\nIts settings:\n\n"
TAIL = "\n\nMore prose after the table.\n"
STALE = f"{HEAD}{BEGIN}\n| variable | default | meaning |\n|---|---|---|\n| `SEEDCORE_PORT` | `80` | old |\n{END}{TAIL}"
CURRENT_ROW = "| `SEEDCORE_PORT` | `8000` |"  # config.py's default port, as the table shows it


def _readme(directory, text: str = STALE):
    path = directory / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_table_between_the_markers_is_rewritten_and_the_rest_of_the_file_kept(tmp_path, capsys):
    path = _readme(tmp_path)
    assert main([str(path)]) == 0
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"{HEAD}{BEGIN}\n| variable | default | meaning |\n") and text.endswith(f"\n{END}{TAIL}")
    assert CURRENT_ROW in text and "`80`" not in text
    assert text == f"{HEAD}{BEGIN}\n{_settings_table.render()}\n{END}{TAIL}"
    assert capsys.readouterr() == ("", "")


def test_check_says_a_stale_table_is_out_of_date_and_changes_nothing(tmp_path, capsys):
    path = _readme(tmp_path)
    assert main([str(path), "--check"]) == 1
    assert path.read_text(encoding="utf-8") == STALE
    out, err = capsys.readouterr()
    assert out == "" and err == f"{path}: the settings table is out of date; run scripts/readme-settings\n"


def test_a_current_table_passes_the_check_and_is_not_written_again(tmp_path, capsys):
    path = _readme(tmp_path)
    main([str(path)])
    os.utime(path, ns=(10**18, 10**18))  # a time no write of now leaves
    assert main([str(path), "--check"]) == 0
    assert main([str(path)]) == 0
    assert path.stat().st_mtime_ns == 10**18
    assert capsys.readouterr() == ("", "")


def test_without_a_path_it_works_on_the_readme_of_the_current_directory(tmp_path, monkeypatch):
    path = _readme(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["--check"]) == 1
    assert main([]) == 0
    assert CURRENT_ROW in path.read_text(encoding="utf-8") and main(["--check"]) == 0


@pytest.mark.parametrize("text", [f"{HEAD}no table here{TAIL}", f"{HEAD}{BEGIN}\n| a |\n{TAIL}",
                                  f"{HEAD}| a |\n{END}{TAIL}", f"{HEAD}{END}\n| a |\n{BEGIN}{TAIL}"],
                         ids=["no markers", "no end marker", "no begin marker", "end before begin"])
@pytest.mark.parametrize("check", [[], ["--check"]], ids=["write", "check"])
def test_a_readme_without_both_markers_in_order_is_refused_naming_them(tmp_path, text, check):
    path = _readme(tmp_path, text)
    with pytest.raises(SystemExit) as refused:
        main([str(path), *check])
    assert refused.value.code == f"README has no settings table markers ({BEGIN} ... {END})"  # exit code 1
    assert path.read_text(encoding="utf-8") == text


def test_run_as_a_module_its_exit_code_is_the_outcome(tmp_path, monkeypatch):
    """`python -m seedcore._settings_table README --check`, the module run as __main__ in this process."""
    path = _readme(tmp_path)
    for argv, code in ([str(path), "--check"], 1), ([str(path)], 0), ([str(path), "--check"], 0):
        monkeypatch.setattr(sys, "argv", [_settings_table.__file__, *argv])
        with pytest.raises(SystemExit) as ended:
            runpy.run_path(_settings_table.__file__, run_name="__main__")
        assert ended.value.code == code, argv
    assert CURRENT_ROW in path.read_text(encoding="utf-8")
