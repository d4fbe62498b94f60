"""build-data end to end on synthetic data, with a scripted backend that reads text only at high resolution."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from awares_tool.crops import get_crop_set
from awares_tool.images import open_image
from awares_train.data.build import BuildConfig, build_dataset
from awares_train.data.synthetic import write_split

# The "model": a real ScriptedBackend whose reply function recognises the image it is shown. It answers
# every question right from the full image, and from the low-res view only those that need no crop
# (the small code is illegible at half scale), exactly the generator's ground truth. Written to a file
# so that the CLI can load it in a subprocess with --backend py:oracle_backend:make.
ORACLE = '''
import hashlib, json, os
from pathlib import Path
from awares_tool.backends.scripted import ScriptedBackend
from awares_tool.images import open_image
from awares_tool.images.lowres import make_lowres_view

def _key(img):
    return hashlib.sha1(img.tobytes() + repr(img.size).encode()).hexdigest()

def make(records_path=None, delay=None, fail_ids=(), wrong_ids=()):
    path = Path(records_path or os.environ["ORACLE_RECORDS"])
    table, failing = {}, set()
    for line in path.read_text().splitlines():
        r = json.loads(line)
        src = open_image(path.parent / r["image"])
        ans = "wrong" if r["id"] in wrong_ids else r["answers"][0]
        table[_key(src.image)] = ans
        low = make_lowres_view(src)
        table[_key(low)] = "I cannot read it" if r["needs_crop"] else ans
        if r["id"] in fail_ids:
            failing |= {_key(src.image), _key(low)}
    def reply(messages):
        img = [i for m in messages for i in m.images][-1]
        k = _key(img)
        if k in failing:
            raise RuntimeError("backend exploded")
        return table.get(k, "unknown")
    d = float(os.environ.get("ORACLE_DELAY", "0")) if delay is None else delay
    return ScriptedBackend(reply, delay_s=d, name="oracle")
'''


@pytest.fixture()
def synth(tmp_path, monkeypatch):
    records = write_split(tmp_path / "syn", 12)
    (tmp_path / "oracle_backend.py").write_text(ORACLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import oracle_backend

    importlib.reload(oracle_backend)
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    return records, rows, oracle_backend


def _cfg(tmp_path, out="out", **kw):
    kw.setdefault("plot", False)  # matplotlib costs seconds; one test checks the plot
    return BuildConfig(data=str(tmp_path / "syn"), out=str(tmp_path / out), grounding="dataset",
                       region_rule="cover", progress=False, **kw)


def _lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()] if Path(path).exists() else []


def test_end_to_end_labels_and_targets_match_ground_truth(tmp_path, synth):
    records, rows, oracle = synth
    report = build_dataset(_cfg(tmp_path), backend=oracle.make(records))
    out = tmp_path / "out"
    data = {r["id"]: r for r in _lines(out / "data.jsonl")}
    truth = {r["id"]: r for r in rows}
    assert report.written == len(rows) == len(data) and report.errors == report.rejected == 0
    assert {i for i, r in data.items() if r["label"] == "crop"} == {i for i, r in truth.items() if r["needs_crop"]}
    assert 0 < sum(r["needs_crop"] for r in rows) < len(rows)
    cs = get_crop_set("awares9")
    for rid, rec in data.items():
        t = truth[rid]
        src = open_image(out / rec["image"])
        assert src.size == (448, 448) and tuple(rec["image_size"]) == (448, 448)
        low = Image.open(out / rec["images"][0])
        assert low.size == (224, 224)
        user_images = sum(p["type"] == "image" for m in rec["messages"] for p in m["content"])
        assert user_images == len(rec["images"])
        assert all("image" not in p for m in rec["messages"] for p in m["content"])
        assert rec["messages"][-1]["content"][0]["text"] == t["answers"][0]
        if rec["label"] == "crop":
            assert rec["target_regions"] == t["target_regions"]  # the evidence box's region
            assert rec["evidence_box"] == t["evidence_box"] and rec["grounding"] == "dataset"
            assert rec["tool_turn"] == 2
            assert rec["messages"][2]["content"][0]["text"] == f"GET_CROPS: ['{t['target_regions'][0]}']"
            crop = Image.open(out / rec["images"][1])
            assert crop.tobytes() == src.crop(cs.box(rec["target_regions"][0], 448, 448)).tobytes()
            assert rec["target_rtr"] == pytest.approx(0.5)
            assert rec["judge"]["verdict"] == "fullres"
        else:
            assert rec["target_regions"] == [] and rec["tool_turn"] is None and len(rec["messages"]) == 3
            assert rec["target_rtr"] == pytest.approx(0.25) and rec["judge"]["verdict"] == "tie"
    stats = json.loads((out / "stats.json").read_text())
    share = sum(r["needs_crop"] for r in rows) / len(rows)
    assert stats["label_shares"]["crop"] == pytest.approx(share)
    assert sum(stats["crop_histogram"].values()) == stats["labels"]["crop"] and stats["fallback_all"] == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["backend"] == "oracle" and settings["config"]["seed"] == 0
    assert settings["lowres_policy"] == {"kind": "scale", "factor": 0.5}


def test_rerun_is_idempotent_and_concurrency_keeps_order(tmp_path, synth):
    records, rows, oracle = synth
    build_dataset(_cfg(tmp_path), backend=oracle.make(records))
    first = (tmp_path / "out" / "data.jsonl").read_bytes()
    again = build_dataset(_cfg(tmp_path), backend=oracle.make(records))
    assert again.skipped == len(rows) and again.written == 0
    assert (tmp_path / "out" / "data.jsonl").read_bytes() == first
    build_dataset(_cfg(tmp_path, out="par", concurrency=4), backend=oracle.make(records, delay=0.002))
    assert (tmp_path / "par" / "data.jsonl").read_bytes() == first


def test_errors_are_rejected_then_retried_without_duplicates(tmp_path, synth):
    records, rows, oracle = synth
    bad = {rows[3]["id"], rows[7]["id"]}
    report = build_dataset(_cfg(tmp_path), backend=oracle.make(records, fail_ids=bad))
    assert report.errors == 2 and report.written == len(rows) - 2
    rejects = _lines(tmp_path / "out" / "rejects.jsonl")
    assert {r["id"] for r in rejects} == bad and all("backend exploded" in r["error"] for r in rejects)
    report = build_dataset(_cfg(tmp_path), backend=oracle.make(records))
    assert report.written == 2 and report.skipped == len(rows) - 2
    ids = [r["id"] for r in _lines(tmp_path / "out" / "data.jsonl")]
    assert sorted(ids) == sorted(r["id"] for r in rows)
    assert _lines(tmp_path / "out" / "rejects.jsonl") == []


def test_drop_records_are_rejected_or_kept(tmp_path, synth):
    records, rows, oracle = synth
    wrong = {rows[0]["id"], rows[1]["id"]}
    report = build_dataset(_cfg(tmp_path), backend=oracle.make(records, wrong_ids=wrong))
    assert report.rejected == 2
    assert {(r["id"], r["reason"]) for r in _lines(tmp_path / "out" / "rejects.jsonl")} == {(i, "drop") for i in wrong}
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["labels"]["drop"] == 2
    build_dataset(_cfg(tmp_path, out="keep", keep_drop=True), backend=oracle.make(records, wrong_ids=wrong))
    kept = [r for r in _lines(tmp_path / "keep" / "data.jsonl") if r["label"] == "drop"]
    assert {r["id"] for r in kept} == wrong and all(r["judge"]["verdict"] == "neither" for r in kept)


def test_iou_rule_falls_back_to_all_and_counts_it(tmp_path, synth):
    records, rows, oracle = synth
    cfg = _cfg(tmp_path).model_copy(update={"region_rule": "iou"})
    build_dataset(cfg, backend=oracle.make(records))
    crops = [r for r in _lines(tmp_path / "out" / "data.jsonl") if r["label"] == "crop"]
    assert crops and all(r["target_regions"] == ["all"] and r["target_fallback"] == "no_region" for r in crops)
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["fallback_all"] == len(crops) and stats["crop_histogram"] == {"all": len(crops)}


def test_resume_with_other_settings_is_refused(tmp_path, synth):
    records, rows, oracle = synth
    build_dataset(_cfg(tmp_path, limit=2), backend=oracle.make(records))
    with pytest.raises(ValueError, match="region_rule"):
        build_dataset(_cfg(tmp_path).model_copy(update={"region_rule": "iou"}), backend=oracle.make(records))


@pytest.mark.slow  # imports datasets and matplotlib: 10-20 s on a busy 2-core machine
def test_load_trajectories_and_stats_plot(tmp_path, synth):
    pytest.importorskip("datasets")
    from awares_train.data.format import load_trajectories

    records, rows, oracle = synth
    build_dataset(_cfg(tmp_path, limit=6, plot=True), backend=oracle.make(records))
    assert (tmp_path / "out" / "stats.png").stat().st_size > 1000
    ds = load_trajectories(tmp_path / "out")
    assert len(ds) == 6
    row = ds[0]
    assert all(isinstance(im, Image.Image) for im in row["images"]) and Path(row["image"]).is_absolute()
    assert row["messages"][1]["content"][0]["type"] == "image"


@pytest.mark.slow  # two CLI subprocesses (imports + 24 records with a delayed backend)
def test_kill_minus_9_and_resume_loses_nothing_and_duplicates_nothing(tmp_path, synth):
    records, rows, oracle = synth
    build_dataset(_cfg(tmp_path, out="ref"), backend=oracle.make(records))
    env = {**os.environ, "ORACLE_RECORDS": str(records), "PYTHONPATH": str(tmp_path), "ORACLE_DELAY": "0.1"}
    cmd = [sys.executable, "-m", "awares_train.cli", "build-data", "--data", str(tmp_path / "syn"),
           "--out", str(tmp_path / "out"), "--backend", "py:oracle_backend:make", "--grounding", "dataset",
           "--region-rule", "cover", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = tmp_path / "out" / "data.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not data.exists() or len(data.read_text().splitlines()) < 5):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(data.read_text().splitlines())
    assert 5 <= partial < len(rows), "the run must be killed mid-way"
    env["ORACLE_DELAY"] = "0"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = _lines(data)
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)) == len(rows)
    ref = sorted(_lines(tmp_path / "ref" / "data.jsonl"), key=lambda r: r["id"])
    assert sorted(got, key=lambda r: r["id"]) == ref
    for r in got:  # every image is complete and identical to an uninterrupted run's
        for rel in [r["image"], *r["images"]]:
            a, b = (tmp_path / "out" / rel).read_bytes(), (tmp_path / "ref" / rel).read_bytes()
            assert hashlib.sha1(a).digest() == hashlib.sha1(b).digest()
    assert not list((tmp_path / "out" / "images").glob("*.tmp*"))
    index = (tmp_path / "out" / "done_ids.txt").read_text().split()
    assert sorted(set(index)) == sorted(ids)
