from __future__ import annotations

from bastion._names import known_names


def test_a_short_list_is_given_in_full() -> None:
    assert known_names("label", ["a", "b", "c"]) == "columns are a, b, c"


def test_close_matches_come_first() -> None:
    text = known_names("mean_radus", ["mean_radius", "worst_area", "target"])
    assert text == "did you mean 'mean_radius'? columns are mean_radius, worst_area, target"


def test_a_wide_table_shows_its_first_and_last_names_and_its_width() -> None:
    columns = [f"pixel_{i}" for i in range(64)] + ["digit"]
    text = known_names("target", columns)
    # the last column (often the target) is named although it is the 65th
    assert text.endswith("pixel_61, pixel_62, pixel_63, digit (65 in all)")
    assert "pixel_14, ..., pixel_60" in text
    assert "did you mean" not in text


def test_nothing_known() -> None:
    assert known_names("x", [], noun="profiles") == "there are no profiles"


def test_close_names_are_found_without_case_and_all_cases_shown() -> None:
    from bastion._names import did_you_mean

    assert did_you_mean("adv001", ["ADV001", "MV001"]).startswith("did you mean 'ADV001'")
    assert did_you_mean("dq005", ["DQ005", "MV005"]).startswith("did you mean 'DQ005'")
    # names equal but for case are both shown, the closer one first (one was hidden)
    assert did_you_mean("age_", ["Age", "age", "income"]) == "did you mean 'age' or 'Age'? "
    assert did_you_mean("zzz", ["a", "b"]) == ""
    assert did_you_mean("agee", ["age", "age", "income"]) == "did you mean 'age'? "
