"""The SQL change files: forward and reverse in one file, versions of a function included."""

from pathlib import Path

import pytest

from creditledger.migrations import sql_change_read


def test_a_change_file_gives_its_forward_and_reverse_sql_with_includes_expanded(tmp_path: Path):
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "f.v1.sql").write_text("CREATE OR REPLACE FUNCTION f() ... v1\n")
    (tmp_path / "functions" / "f.v2.sql").write_text("CREATE OR REPLACE FUNCTION f() ... v2\n")
    (tmp_path / "0002_f.sql").write_text(
        "-- f, version 2\n\\ir functions/f.v2.sql\nDROP FUNCTION g();\n\n-- reverse:\n\\ir functions/f.v1.sql\n"
    )

    forward, reverse = sql_change_read(tmp_path, "0002_f")

    assert forward == "-- f, version 2\nCREATE OR REPLACE FUNCTION f() ... v2\nDROP FUNCTION g();\n\n"
    assert reverse == "CREATE OR REPLACE FUNCTION f() ... v1\n"


@pytest.mark.parametrize("text", ["CREATE TABLE t ();\n", "A;\n-- reverse:\nB;\n-- reverse:\nC;\n"])
def test_a_change_file_needs_exactly_one_reverse_section(tmp_path: Path, text: str):
    (tmp_path / "0002_t.sql").write_text(text)

    with pytest.raises(ValueError, match="exactly one line '-- reverse:'"):
        sql_change_read(tmp_path, "0002_t")
