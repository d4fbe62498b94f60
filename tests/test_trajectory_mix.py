"""Several trajectory folders in one ``train_data`` (``a/,b/``): mixed, ids kept unique, mismatches refused."""

from __future__ import annotations

import json

import pytest

from awares_train.sft.data import read_records, read_settings, trajectory_folders
from awares_train.sft.toydata import write_toy_trajectories


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory):
    a = write_toy_trajectories(tmp_path_factory.mktemp("a"), 3, crop_share=1.0)
    b = write_toy_trajectories(tmp_path_factory.mktemp("b"), 2, crop_share=0.0, seed=3)
    return a, b


def test_folders_are_split_on_commas(tmp_path):
    assert trajectory_folders(f" {tmp_path}/a , {tmp_path}/b,") == [tmp_path / "a", tmp_path / "b"]
    assert trajectory_folders(tmp_path) == [tmp_path]
    with pytest.raises(ValueError, match="no trajectory folder"):
        trajectory_folders(" , ")


def test_records_of_both_folders_in_order_with_unique_ids(two_folders):
    a, b = two_folders
    alone = read_records(a), read_records(b)
    mixed = read_records(f"{a},{b}")
    assert [r["question"] for r in mixed] == [r["question"] for r in alone[0] + alone[1]]
    assert [r["id"] for r in mixed] == [f"0:{r['id']}" for r in alone[0]] + [f"1:{r['id']}" for r in alone[1]]
    assert len({r["id"] for r in mixed}) == 5
    assert all(r["images"][0].startswith(str(b.resolve())) for r in mixed[3:])  # paths stay each folder's own
    assert [r["label"] for r in mixed] == ["crop"] * 3 + ["direct"] * 2
    assert len(read_records(f"{a},{b}", limit=4)) == 4
    assert len(read_records(f"{a},{b}", limit=2)) == 2


def test_settings_come_from_the_first_folder(two_folders):
    a, b = two_folders
    assert read_settings(f"{a},{b}") == read_settings(a)


def test_folders_built_with_another_lowres_view_are_refused(tmp_path, two_folders):
    a, _ = two_folders
    other = write_toy_trajectories(tmp_path / "other", 1, lowres=0.25)
    with pytest.raises(ValueError, match="low-res view"):
        read_records(f"{a},{other}")


def test_folders_built_with_another_crop_set_are_refused(tmp_path, two_folders):
    a, _ = two_folders
    other = write_toy_trajectories(tmp_path / "other", 1)
    settings = json.loads((other / "settings.json").read_text())
    (other / "settings.json").write_text(json.dumps({**settings, "crop_set": {"name": "quadrants"}}))
    with pytest.raises(ValueError, match="crop set"):
        read_settings(f"{a},{other}")


def test_a_missing_folder_names_itself(tmp_path, two_folders):
    a, _ = two_folders
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_records(f"{a},{tmp_path / 'nowhere'}")
