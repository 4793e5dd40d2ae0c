"""The rules folder (studio.rules): names that could leave the folder are refused before any path is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.rules import RulesError, RulesNameError, list_rules, load_collection, rules_path, save_rules_text
from tests.fixtures.evolve import CLOCK_RULES as CLOCK


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "/abs", "..", "", ".hidden", "a b"])
def test_a_name_that_is_not_a_plain_file_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(RulesNameError, match="is not valid"):
        rules_path(tmp_path, name)
    with pytest.raises(RulesError):  # a RulesNameError is a RulesError: the CLI and scheduler report it
        load_collection(tmp_path, name)


def test_save_list_and_load_go_through_one_path(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    assert list_rules(folder) == {}
    save_rules_text(folder, "day", CLOCK)
    assert list_rules(folder) == {"day": rules_path(folder, "day")} == {"day": folder / "day.toml"}
    assert load_collection(folder, "day").name == "day"
    with pytest.raises(RulesError, match=r"day\.toml"):  # the collection's own file, not the temporary one
        save_rules_text(folder, "day", CLOCK.replace('every = "1h"', 'every = "often"'))
    assert load_collection(folder, "day").schedule.every == "1h"  # nothing written
