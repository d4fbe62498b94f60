"""Backend spec strings: ``KIND:TARGET?key=value&...`` parsed into typed options, and every way they can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from awares_tool.backends import resolve_backend, spec_with_options
from awares_tool.backends.spec import LlamaCppOptions, OpenAIOptions, TransformersOptions, parse_backend_spec
from awares_tool.errors import BackendSpecError, BackendUnavailableError


@pytest.mark.parametrize(("text", "kind", "target", "model", "kwargs"), [
    ("transformers:/m/qwen?dtype=bf16&device=cuda:1&attn=eager", "transformers", "/m/qwen", None,
     {"dtype": "bfloat16", "device": "cuda:1", "attn_implementation": "eager"}),
    ("hf:Qwen/Qwen2.5-VL-7B-Instruct?device=auto", "transformers", "Qwen/Qwen2.5-VL-7B-Instruct", None,
     {"device": "auto"}),
    ("transformers:/m/qwen", "transformers", "/m/qwen", None, {}),
    ("default?dtype=fp32&threads=2", "default", "", None, {"dtype": "float32", "threads": 2}),
    ("llamacpp:/m/x.gguf?n_ctx=4096&n_threads=2&n_gpu_layers=-1", "llamacpp", "/m/x.gguf", None,
     {"n_ctx": 4096, "n_threads": 2, "n_gpu_layers": -1}),
    ("openai:http://127.0.0.1:8000/v1#qwen?timeout=30&tools=false&tool_images=1", "openai",
     "http://127.0.0.1:8000/v1", "qwen", {"timeout_s": 30.0, "use_tools": False, "tool_images": True}),
    ("openai:https://h/v1?api-version=2024-02#gpt", "openai", "https://h/v1?api-version=2024-02", "gpt", {}),
    ("openai:https://h/v1?api-version=2024-02#gpt?max_retries=0", "openai", "https://h/v1?api-version=2024-02",
     "gpt", {"max_retries": 0}),
])
def test_specs_parse_into_typed_options_and_print_back(text, kind, target, model, kwargs):
    spec = parse_backend_spec(text)
    assert (spec.kind, spec.target, spec.model) == (kind, target, model)
    assert spec.options.constructor_kwargs() == kwargs
    again = parse_backend_spec(str(spec))  # the canonical string parses back to the same spec
    assert again == spec and again.cache_key() == spec.cache_key()


def test_none_and_default_name_the_embedded_model():
    assert parse_backend_spec(None) == parse_backend_spec("default")
    assert parse_backend_spec(None).kind == "default"


def test_a_question_mark_inside_an_existing_path_is_part_of_the_path(tmp_path: Path):
    folder = tmp_path / "odd?name=1"
    folder.mkdir()
    assert parse_backend_spec(f"transformers:{folder}").target == str(folder)
    spec = parse_backend_spec(f"transformers:{folder}?dtype=bfloat16")
    assert spec.target == str(folder) and spec.options.dtype == "bfloat16"


def test_values_are_percent_decoded_and_written_back_encoded():
    spec = parse_backend_spec(spec_with_options("llamacpp:/m/x.gguf", mmproj="/m/a&b=c.gguf"))
    assert spec.options.mmproj == "/m/a&b=c.gguf"
    assert parse_backend_spec("llamacpp:/m/x.gguf?mmproj=/m/a%26b.gguf").options.mmproj == "/m/a&b.gguf"


def test_equal_specs_share_a_cache_key(tmp_path: Path):
    (tmp_path / "m").mkdir()
    a = parse_backend_spec(f"transformers:{tmp_path}/m?dtype=bf16&device=cpu")
    b = parse_backend_spec(f"transformers:{tmp_path}/./m?device=cpu").with_options(dtype="bfloat16")
    assert a.cache_key() == b.cache_key()  # same folder, same options in another order and spelling
    assert a.cache_key() != parse_backend_spec(f"transformers:{tmp_path}/m?device=cpu").cache_key()


@pytest.mark.parametrize(("text", "key", "words"), [
    ("transformers:/m?dtpye=bf16", "dtpye", ["unknown option 'dtpye'", "valid options: device, dtype, attn"]),
    ("transformers:/m?dtype=bf17", "dtype", ["bad value 'bf17' for option 'dtype'", "bfloat16, float16"]),
    ("transformers:/m?device=gpu", "device", ["bad value 'gpu'", "cpu, cuda, cuda:N"]),
    ("transformers:/m?attn=flash", "attn", ["bad value 'flash'", "sdpa, eager, flash_attention_2"]),
    ("transformers:/m?threads=-1", "threads", ["bad value '-1'", "greater than 0"]),
    ("transformers:/m?dtype", "dtype", ["not of the form key=value"]),
    ("transformers:/m?dtype=bf16&dtype=fp32", "dtype", ["appears twice"]),
    ("llamacpp:/m.gguf?device=cuda", "device", ["unknown option 'device' for llamacpp", "n_gpu_layers"]),
    ("openai:http://h/v1#m?dtype=bf16", "dtype", ["unknown option 'dtype' for openai", "timeout"]),
    ("openai:http://h/v1#m?timeout=soon", "timeout", ["bad value 'soon'", "valid number"]),
    ("tensorflow:/m", None, ["unknown backend kind 'tensorflow'", "transformers, llamacpp, openai"]),
    ("transformers", None, ["not of the form KIND:TARGET"]),
])
def test_bad_specs_raise_a_typed_error_naming_key_and_fix(text, key, words):
    with pytest.raises(BackendSpecError) as info:
        parse_backend_spec(text)
    err = info.value
    assert err.key == key
    assert all(w in str(err) for w in words), str(err)
    assert text in str(err) or err.key is None or "twice" in str(err)
    assert isinstance(err, BackendUnavailableError) and isinstance(err, ValueError)  # old handlers still catch it


def test_unknown_key_error_lists_the_valid_keys_as_data():
    with pytest.raises(BackendSpecError) as info:
        parse_backend_spec("transformers:/m?dtpye=bf16")
    assert set(info.value.valid) == set(TransformersOptions.model_fields) and info.value.valid[-1] == "model_card"
    with pytest.raises(BackendSpecError) as info:
        parse_backend_spec("transformers:/m?dtype=bf17")
    assert info.value.valid == ("auto", "float32", "bfloat16", "float16") and info.value.value == "bf17"


def test_flags_merge_into_the_spec_and_conflicts_are_refused():
    spec = parse_backend_spec("transformers:/m?dtype=bf16")
    merged = spec.with_options(device="cpu", dtype=None, attn=None)  # unset CLI flags are None
    assert merged.options.constructor_kwargs() == {"device": "cpu", "dtype": "bfloat16"}
    assert spec.with_options(dtype="bfloat16") == spec  # the same value twice is no conflict
    with pytest.raises(BackendSpecError, match=r"'dtype' is given twice .* 'bfloat16' in the spec and 'float16'"):
        spec.with_options(dtype="float16")
    with pytest.raises(BackendSpecError, match="unknown option 'dtype' for llamacpp"):
        resolve_backend("llamacpp:/m.gguf", dtype="bfloat16")  # refused before anything is opened


def test_spec_with_options_keeps_none_as_none_without_flags():
    assert spec_with_options(None) is None and spec_with_options(None, device=None) is None
    assert spec_with_options(None, dtype="bf16") == "default?dtype=bfloat16"
    assert spec_with_options("transformers:/m", attn="eager") == "transformers:/m?attn=eager"


def test_python_keyword_names_are_accepted_as_aliases():
    assert LlamaCppOptions(n_threads=2).threads == 2
    assert OpenAIOptions(timeout_s=5, use_tools=False).constructor_kwargs() == {"timeout_s": 5.0, "use_tools": False}
    assert TransformersOptions(attn_implementation="eager").attn == "eager"


def test_an_api_key_never_appears_in_the_printed_spec():
    spec = parse_backend_spec("openai:http://h/v1#m").with_options(api_key="sk-secret", timeout=3)
    assert "sk-secret" not in str(spec) and "sk-secret" not in repr(spec.options)
    assert spec.options.constructor_kwargs()["api_key"] == "sk-secret"


def test_objects_take_no_spec_options():
    from awares_tool.backends.scripted import ScriptedBackend

    be = ScriptedBackend(["x"])
    assert resolve_backend(be) is be and resolve_backend(be, dtype=None) is be
    with pytest.raises(TypeError, match="apply to spec strings"):
        resolve_backend(be, dtype="bfloat16")
