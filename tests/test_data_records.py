"""Loading VQA records: every adapter on hand-made rows in its data set's published layout."""

import io
import json

import pytest
from PIL import Image

from awares_train.data.adapters import guess_adapter
from awares_train.data.adapters import load_records
from awares_train.data.records import VQARecord, count_rows


def _png(color=(200, 10, 10), size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_chartqa_hub_parquet_with_embedded_images(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"image": {"bytes": _png(), "path": None}, "query": "What is the peak?", "label": ["42"],
             "human_or_machine": 0},
            {"image": {"bytes": _png((0, 0, 255)), "path": None}, "query": "Which year?", "label": ["2019"],
             "human_or_machine": 1}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train-00000.parquet")
    assert count_rows(tmp_path) == 2
    recs = list(load_records(tmp_path))
    assert [r.source for r in recs] == ["chartqa", "chartqa"]
    assert recs[0].question == "What is the peak?" and recs[0].answers == ["42"]
    assert Image.open(io.BytesIO(recs[1].image_source())).getpixel((0, 0)) == (0, 0, 255)
    assert recs[0].id != recs[1].id


def test_chartqa_original_json_with_imgname(tmp_path):
    (tmp_path / "png").mkdir()
    (tmp_path / "png" / "41699051005347.png").write_bytes(_png())
    path = tmp_path / "train_augmented.json"
    path.write_text(json.dumps([{"imgname": "41699051005347.png", "query": "Max value?", "label": "12.5"}]))
    (rec,) = load_records(path)
    assert rec.answers == ["12.5"] and rec.image == str(tmp_path / "png" / "41699051005347.png")


def test_docvqa_original_layout(tmp_path):
    (tmp_path / "documents").mkdir()
    (tmp_path / "documents" / "xnbl0037_1.png").write_bytes(_png())
    path = tmp_path / "train_v1.0.json"
    path.write_text(json.dumps({"dataset_name": "docvqa", "data": [
        {"questionId": 337, "question": "what is the date mentioned in this letter?",
         "question_types": ["handwritten"], "image": "documents/xnbl0037_1.png", "docId": 279,
         "ucsf_document_id": "xnbl0037", "ucsf_document_page_no": "1", "answers": ["1/8/93"],
         "data_split": "train"}]}))
    (rec,) = load_records(path)
    assert (rec.id, rec.source, rec.answers) == ("docvqa-337", "docvqa", ["1/8/93"])
    assert rec.image.endswith("documents/xnbl0037_1.png") and rec.meta["docId"] == 279


def test_infovqa_original_layout(tmp_path):
    path = _jsonl(tmp_path / "infovqa.jsonl", [
        {"questionId": 98313, "question": "Which social platform has heavy female audience?",
         "image_local_name": "37313.jpeg", "image_url": "https://example.invalid/x.jpg",
         "answers": ["pinterest"], "answer_type": ["single span"]}])
    assert guess_adapter(json.loads(path.read_text())) == "infovqa"
    (rec,) = load_records(path)
    assert rec.id == "infovqa-98313" and rec.source == "infovqa" and rec.image.endswith("37313.jpeg")


def test_textvqa_answers_by_frequency(tmp_path):
    path = _jsonl(tmp_path / "textvqa.jsonl", [
        {"question_id": 34602, "question": "what is the brand of this camera?", "image_id": "003a8ae2ef43b901",
         "image_classes": ["Cassette deck"], "answers": ["nous les gosses", "dakota", "clos culombu", "dakota",
                                                         "dakota", "dakota digital", "dakota", "dakota",
                                                         "dakota digital", "dakota"],
         "ocr_tokens": ["DAKOTA"], "set_name": "train"}])
    (rec,) = load_records(path)
    assert rec.id == "textvqa-34602"
    assert rec.answers[:2] == ["dakota", "dakota digital"] and len(rec.answers) == 4
    assert rec.image.endswith("003a8ae2ef43b901.jpg") and rec.meta["answer_counts"]["dakota"] == 6


def test_awares_chat_layout_keeps_published_target(tmp_path):
    path = _jsonl(tmp_path / "awares.jsonl", [
        {"id": "aw-1", "image": "img.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is the invoice number?"},
            {"from": "gpt", "value": "GET_CROPS: ['3']"},
            {"from": "human", "value": "<image>"},
            {"from": "gpt", "value": "48213"}]},
        {"id": "aw-2", "images": ["b.png"], "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Color?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "red"}]}]}])
    a, b = load_records(path)
    assert (a.question, a.answers, a.meta["target_regions"]) == ("What is the invoice number?", ["48213"], ["3"])
    assert (b.question, b.answers, b.meta) == ("Color?", ["red"], {})


def test_hf_saved_folder_with_image_feature(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict(
        {"questionId": [1, 2], "question": ["q1", "q2"], "answers": [["a"], ["b", "bb"]],
         "image": [Image.new("RGB", (20, 10), (1, 2, 3)), Image.new("RGB", (20, 10), (4, 5, 6))]},
        features=datasets.Features({"questionId": datasets.Value("int64"), "question": datasets.Value("string"),
                                    "answers": datasets.List(datasets.Value("string")), "image": datasets.Image()}))
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "hf"))
    recs = list(load_records(tmp_path / "hf", split="validation"))
    assert [r.id for r in recs] == ["docvqa-1", "docvqa-2"] and recs[1].answers == ["b", "bb"]
    assert Image.open(io.BytesIO(recs[1].image_source())).getpixel((0, 0)) == (4, 5, 6)


def test_synthetic_records_and_limit(tmp_path):
    from awares_train.data.synthetic import write_split

    write_split(tmp_path / "syn", 4)
    recs = list(load_records(tmp_path / "syn", limit=3))
    assert len(recs) == 3 and all(r.source == "synthetic" for r in recs)
    for r in recs:
        assert (r.evidence_boxes is not None) == r.meta["needs_crop"]
        assert Image.open(r.image).size == (448, 448)


def test_generic_and_errors(tmp_path):
    path = _jsonl(tmp_path / "g.jsonl", [{"id": "x", "image": "a.png", "question": "q", "answer": 7,
                                          "evidence_box": [1, 2, 3, 4], "extra": "kept"}])
    (rec,) = load_records(path, adapter="generic")
    assert rec.answers == ["7"] and rec.evidence_boxes == [(1, 2, 3, 4)] and rec.meta == {"extra": "kept"}
    with pytest.raises(ValueError, match="unknown data adapter"):
        list(load_records(path, adapter="nope"))
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "question": "q", "answers": ["x"]}\n{oops\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        list(load_records(tmp_path / "bad.jsonl", adapter="generic"))
    (tmp_path / "missing.jsonl").write_text('{"id": "a", "answers": ["x"]}\n{"id": "b", "question": "q", "answers": ["y"]}\n')
    with pytest.raises(ValueError, match="row 0 cannot be read"):
        list(load_records(tmp_path / "missing.jsonl", adapter="generic"))
    assert [r.id for r in load_records(tmp_path / "missing.jsonl", adapter="generic", on_error="skip")] == ["b"]
    with pytest.raises(ValueError, match="neither an image"):
        VQARecord(id="y", question="q", answers=["a"]).image_source()
