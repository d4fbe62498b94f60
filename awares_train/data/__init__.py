"""Training data: VQA records in, crop-use trajectories out (steps 1-2 of the AwaRes recipe).

* :mod:`.records`, :mod:`.adapters`: load local VQA data (ChartQA, DocVQA, InfoVQA, TextVQA, AwaRes,
  the synthetic generator, generic JSONL/parquet/datasets folders) as :class:`VQARecord`;
* :mod:`.answering`: answer each question from the low-res view and from the full image;
* :mod:`.judges`: decide ``direct`` / ``crop`` / ``drop`` (metric, embedding or LLM judge);
* :mod:`.grounding`, :mod:`.ocr`: find the evidence box (data set, Tesseract, VLM) and map it to crops;
* :mod:`.format`, :mod:`.store`, :mod:`.stats`: the trajectory folder, resumable writing, the report;
* :mod:`.build`: the pipeline (``awares-train build-data``); :mod:`.synthetic`: the synthetic test bed.
"""

from awares_train.data.build import BuildConfig, BuildReport, build_dataset
from awares_train.data.format import Trajectory, load_trajectories
from awares_train.data.grounding import (
    ChainGrounder,
    DatasetGrounder,
    Grounder,
    Grounding,
    OCRGrounder,
    VLMGrounder,
    get_grounder,
    map_box_to_regions,
    map_grounding_to_regions,
)
from awares_train.data.judges import EmbeddingJudge, Judge, Judgement, LLMJudge, MetricJudge, get_judge, label_for
from awares_train.data.adapters import load_records
from awares_train.data.records import VQARecord, read_rows

__all__ = [
    "BuildConfig",
    "BuildReport",
    "build_dataset",
    "Trajectory",
    "load_trajectories",
    "VQARecord",
    "load_records",
    "read_rows",
    "Judge",
    "Judgement",
    "MetricJudge",
    "EmbeddingJudge",
    "LLMJudge",
    "get_judge",
    "label_for",
    "Grounder",
    "Grounding",
    "DatasetGrounder",
    "OCRGrounder",
    "VLMGrounder",
    "ChainGrounder",
    "get_grounder",
    "map_box_to_regions",
    "map_grounding_to_regions",
]
