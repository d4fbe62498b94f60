"""A resumable run's work folder refuses a rerun with another base or other settings (no silent reuse)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from awares_train.work_folder import RECORD, WorkFolderMismatchError, claim_work_folder, model_fingerprint

MODELS = Path(__file__).resolve().parent.parent / "awares_tool" / "models"


def test_a_work_folder_accepts_its_own_settings_and_refuses_others(tmp_path: Path) -> None:
    work = tmp_path / "work"
    claim_work_folder(work, {"base": "abc", "plan": [("where", 2)]}, what="phase")
    assert json.loads((work / RECORD).read_text()) == {"base": "abc", "plan": [["where", 2]]}
    claim_work_folder(work, {"base": "abc", "plan": [("where", 2)]}, what="phase")  # tuples equal their JSON lists
    with pytest.raises(WorkFolderMismatchError) as err:
        claim_work_folder(work, {"base": "def", "plan": [("where", 2)], "lr": 0.1}, what="phase")
    message = str(err.value)
    assert f"{work} holds a phase started with other settings" in message
    assert 'base: "abc" there, "def" now' in message and "lr: null there, 0.1 now" in message
    assert "plan" not in message and "delete" in message
    assert json.loads((work / RECORD).read_text())["base"] == "abc"  # the record is not rewritten


def test_results_without_a_record_are_resumed_with_a_warning(tmp_path: Path, caplog) -> None:
    fresh, old = tmp_path / "fresh", tmp_path / "old"
    fresh.mkdir()
    (fresh / "train.log").write_text("a log is not a result\n")
    old.mkdir()
    (old / "stage_bench.pt").write_bytes(b"weights")
    with caplog.at_level(logging.WARNING, logger="awares_train.work_folder"):
        claim_work_folder(fresh, {"base": "abc"}, what="phase")
        assert not caplog.records
        claim_work_folder(old, {"base": "abc"}, what="phase")
    assert "cannot be checked" in caplog.text and (old / RECORD).is_file()


def test_model_fingerprint_follows_the_weights_not_the_path_or_card(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(MODELS / "tiny-base", copy)
    assert model_fingerprint(copy) == model_fingerprint(MODELS / "tiny-base")
    (copy / "awares.json").write_text("{}")  # the card is documentation
    assert model_fingerprint(copy) == model_fingerprint(MODELS / "tiny-base")
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_fingerprint(copy) != model_fingerprint(MODELS / "tiny-base")
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        model_fingerprint(tmp_path / "missing")


def test_a_reproduction_rerun_with_another_base_stops_before_any_stage(tmp_path: Path) -> None:
    from awares_train.reproduce.pipeline import ReproduceConfig, work_identity
    from awares_train.reproduce.run import run_reproduction

    work = tmp_path / "work"
    claim_work_folder(work, work_identity(ReproduceConfig(work=work)), what="reproduction")
    other = tmp_path / "other-base"
    shutil.copytree(MODELS / "tiny-awares", other)
    with pytest.raises(WorkFolderMismatchError, match="base: "):
        run_reproduction(ReproduceConfig(work=work, base=other, docs=tmp_path / "docs"))
    with pytest.raises(WorkFolderMismatchError, match="n_train: 2000 there, 40 now"):
        run_reproduction(ReproduceConfig(work=work, n_train=40, docs=tmp_path / "docs"))
    assert sorted(p.name for p in work.iterdir()) == [RECORD]  # nothing was read, written or relabelled
    # more seeds and the ablations only add runs to the same reproduction
    assert work_identity(ReproduceConfig(work=work, seeds=[0, 1, 2], ablations=False)) == json.loads(
        (work / RECORD).read_text())
