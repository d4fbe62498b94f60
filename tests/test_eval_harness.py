"""The evaluation harness on generated data with a scripted model whose reading depends on resolution."""

from __future__ import annotations

import hashlib
import json

import pytest

from awares_tool import ScriptedBackend, make_lowres_view, open_image, parse_lowres
from awares_train.data.synthetic import SyntheticConfig, write_split
from awares_train.eval.harness import evaluate, load_eval_items


def key(question: str, image) -> tuple[str, str]:
    return question, hashlib.sha1(image.tobytes()).hexdigest()


MIRROR = {"0": "1", "1": "0", "2": "3", "3": "2"}


def reader(truth: dict[tuple[str, str], dict], *, mirror: bool = False):
    """A 'model' that reads the code only from a crop of the right region, and always knows the colours.

    ``mirror``: it asks for the quadrant beside the right one (right row, wrong column) and then cannot read.
    """

    def reply(messages):
        first = messages[1] if messages[0].role == "system" else messages[0]
        size = first.images[0].size
        rec = truth.get(key(first.text_content, first.images[0]))
        if rec is None:
            return "unknown"
        if not rec["needs_crop"]:
            return rec["answers"][0]
        if size[0] >= 448:  # full resolution: readable
            return rec["answers"][0]
        if messages[-1].role == "user" and len(messages) > 2:  # crops have arrived
            return "000" if mirror else rec["answers"][0]
        if messages[0].role == "system":  # awares protocol: ask for the right crop
            target = rec["target_regions"][0]
            return f"GET_CROPS: ['{MIRROR[target] if mirror else target}']"
        return "000"  # low-res only: cannot read

    return reply


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    write_split(out, 12, SyntheticConfig(seed=3), split="test")
    return out / "records.jsonl"


def _truth(data) -> dict[tuple[str, str], dict]:
    truth = {}
    for line in data.read_text().splitlines():
        rec = json.loads(line)
        src = open_image(data.parent / rec["image"])
        for view in (src.image, make_lowres_view(src, parse_lowres(None))):
            truth[key(rec["question"], view)] = rec
    return truth


def test_harness_measures_accuracy_and_cost_per_mode(data, tmp_path):
    items = load_eval_items(data)
    assert len(items) == 12 and all(it.needs_crop is not None for it in items)
    report = evaluate(items, ScriptedBackend(reader(_truth(data))), ["awares", "lowres", "fullres"], label="oracle",
                      progress=False)
    by_mode = {s.mode: s for s in report.summaries}
    n_crop = sum(it.needs_crop for it in items)
    assert 0 < n_crop < len(items)
    assert by_mode["awares"].accuracy == pytest.approx(1.0)
    assert by_mode["fullres"].accuracy == pytest.approx(1.0) and by_mode["fullres"].mean_rtr == pytest.approx(1.0)
    assert by_mode["lowres"].accuracy == pytest.approx(1 - n_crop / len(items))
    assert by_mode["awares"].decision_accuracy == 1.0 and by_mode["awares"].region_accuracy == 1.0
    assert by_mode["awares"].no_crop_share == pytest.approx(1 - n_crop / len(items))
    expected_rtr = (0.25 * (len(items) - n_crop) + 0.5 * n_crop) / len(items)
    assert by_mode["awares"].mean_rtr == pytest.approx(expected_rtr)
    out = report.save(tmp_path / "rep")
    assert (out / "accuracy_vs_rtr.png").stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert "| oracle | awares |" in md and json.loads((out / "report.json").read_text())["label"] == "oracle"
    assert len((out / "items.jsonl").read_text().splitlines()) == 36


def test_region_confusion_shows_right_row_wrong_column(data, tmp_path):
    items = load_eval_items(data)
    report = evaluate(items, ScriptedBackend(reader(_truth(data), mirror=True)), ["awares"], label="mirror",
                      progress=False)
    (cell,) = report.summaries  # one benchmark: no separate overall cell
    assert cell.region_accuracy == 0.0 and cell.decision_accuracy == 1.0
    targets = [it.target_regions[0] for it in items if it.needs_crop]
    expected: dict[str, dict[str, int]] = {}
    for t in targets:
        expected.setdefault(t, {}).setdefault(MIRROR[t], 0)
        expected[t][MIRROR[t]] += 1
    assert cell.region_confusion == expected
    md = report.to_markdown()
    t = targets[0]
    assert f"Regions requested by `mirror` (awares, {cell.benchmark}):" in md
    header = next(line for line in md.splitlines() if line.startswith("| target"))
    row = next(line for line in md.splitlines() if line.startswith(f"| {t} |"))
    cols = [c.strip() for c in header.strip("|").split("|")][1:]
    assert row.strip("|").split("|")[1 + cols.index(MIRROR[t])].strip() == str(expected[t][MIRROR[t]])
