"""The torchvision workaround: image-only Qwen-VL processors save, reload and tokenize images."""

from __future__ import annotations

from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from PIL import Image  # noqa: E402

from awares_tool.backends import hf_processors  # noqa: E402
from awares_tool.errors import BackendUnavailableError  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tiny_processor():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["what is the code?", "red green blue"], trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": SPECIALS})
    cls = hf_processors.image_only_processor_class(Qwen2_5_VLProcessor)
    ip = Qwen2VLImageProcessorPil(size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 256})
    return cls(image_processor=ip, tokenizer=fast, chat_template=TEMPLATE)


def test_image_only_class_is_cached_subclass() -> None:
    from transformers import Qwen2_5_VLProcessor

    a = hf_processors.image_only_processor_class(Qwen2_5_VLProcessor)
    assert a is hf_processors.image_only_processor_class(Qwen2_5_VLProcessor)
    assert issubclass(a, Qwen2_5_VLProcessor) and a.__name__ == "Qwen2_5_VLProcessorImageOnly"


def test_roundtrip_through_load_processor(tmp_path: Path) -> None:
    proc = _tiny_processor()
    proc.save_pretrained(tmp_path)
    hf_processors.register_image_only_processors()
    hf_processors.register_image_only_processors()  # idempotent
    loaded = hf_processors.load_processor(tmp_path)
    assert isinstance(loaded, transformers.ProcessorMixin)
    msgs = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (224, 224), "red")},
                                         {"type": "text", "text": "what is the code?"}]}]
    out = loaded.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True,
                                     return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 16, 16]]
    n_img = int((out["input_ids"] == loaded.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
    assert n_img == 64


def test_bare_tokenizer_is_an_error(tmp_path: Path) -> None:
    proc = _tiny_processor()
    proc.tokenizer.save_pretrained(tmp_path)  # a folder with a tokenizer only
    with pytest.raises(BackendUnavailableError, match="bare"):
        hf_processors.load_processor(tmp_path)


def test_a_folder_naming_the_stock_processor_loads_image_only(tmp_path: Path) -> None:
    """Real Qwen-VL checkpoints, and models saved where torchvision works, name the stock class and carry a video
    processor; without torchvision that class cannot load (seen: a model trained on a GPU box), so the loader
    takes the config's family and builds the image-only class with the folder's own pixel settings."""
    import json

    from transformers import Qwen2_5_VLConfig

    proc = _tiny_processor()
    proc.save_pretrained(tmp_path)
    Qwen2_5_VLConfig().save_pretrained(tmp_path)
    cfg_file = tmp_path / "processor_config.json"
    saved = json.loads(cfg_file.read_text())
    saved["processor_class"] = "Qwen2_5_VLProcessor"
    saved["video_processor"] = {"video_processor_type": "Qwen2VLVideoProcessor", "merge_size": 2, "patch_size": 14,
                                "temporal_patch_size": 2, "size": {"longest_edge": 602112, "shortest_edge": 100352}}
    cfg_file.write_text(json.dumps(saved))
    if hf_processors.torchvision_usable():
        pytest.skip("with torchvision the stock class loads as it is")
    with pytest.raises(Exception, match="(?i)torchvision|video processor"):  # what the stock route does here
        transformers.AutoProcessor.from_pretrained(tmp_path)
    loaded = hf_processors.load_processor(tmp_path)
    assert type(loaded).__name__ == "Qwen2_5_VLProcessorImageOnly"
    assert loaded.image_processor.size.longest_edge == 28 * 28 * 256  # the folder's cap, not a default


def test_our_image_only_folders_load_where_torchvision_works(tmp_path: Path, monkeypatch) -> None:
    """Folders saved here name ``Qwen2_5_VLProcessorImageOnly``, a class transformers cannot find by name; where
    torchvision works nothing is registered for it, and the embedded default loaded as a bare tokenizer (seen on
    a GPU machine). Such a folder loads as the image-only class whether torchvision works or not."""
    from transformers import Qwen2_5_VLConfig

    proc = _tiny_processor()
    proc.save_pretrained(tmp_path)
    Qwen2_5_VLConfig().save_pretrained(tmp_path)
    monkeypatch.setattr(hf_processors, "torchvision_usable", lambda: True)
    monkeypatch.setattr(hf_processors, "_registered", False)
    reg = transformers.models.auto.processing_auto.PROCESSOR_MAPPING._extra_content
    monkeypatch.setattr(transformers.models.auto.processing_auto.PROCESSOR_MAPPING, "_extra_content", {
        k: v for k, v in reg.items() if not v.__name__.endswith("ImageOnly")})  # as in a process with torchvision
    assert not isinstance(transformers.AutoProcessor.from_pretrained(tmp_path), transformers.ProcessorMixin)
    loaded = hf_processors.load_processor(tmp_path)
    assert type(loaded).__name__ == "Qwen2_5_VLProcessorImageOnly"
