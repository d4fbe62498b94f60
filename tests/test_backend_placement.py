"""Device, dtype and device map of a transformers model: the pure decision on made-up machines, and its facts.

No GPU is lent to these tests: the CUDA branches are exercised only through injected capabilities.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from awares_tool.backends.placement import (
    CheckpointInfo,
    CudaDevice,
    DeviceCapabilities,
    checkpoint_info,
    choose_placement,
    cpu_has_native_bf16,
)
from awares_tool.backends.spec import TransformersOptions
from awares_tool.errors import BackendUnavailableError

GIB = 1024**3
CPU_ONLY = DeviceCapabilities()
CPU_BF16 = DeviceCapabilities(cpu_bf16=True)
A100 = CudaDevice(index=0, free_bytes=78 * GIB, total_bytes=80 * GIB, bf16=True, name="A100")
T4 = CudaDevice(index=0, free_bytes=15 * GIB, total_bytes=16 * GIB, bf16=False, name="T4")
SMALL = CudaDevice(index=0, free_bytes=15 * GIB, total_bytes=16 * GIB, bf16=True, name="small")
QWEN_7B = CheckpointInfo(n_params=8_290_000_000, stored_dtype="bfloat16")  # ~15.4 GiB in bf16
TINY_FP32 = CheckpointInfo(n_params=4_500_000, stored_dtype="float32")


def place(caps: DeviceCapabilities, ckpt: CheckpointInfo = TINY_FP32, **options):
    return choose_placement(TransformersOptions(**options), caps, ckpt)


@pytest.mark.parametrize(("caps", "ckpt", "device", "dtype", "device_map"), [
    (CPU_ONLY, QWEN_7B, "cpu", "float32", None),          # no bf16 instructions: fp32
    (CPU_BF16, QWEN_7B, "cpu", "bfloat16", None),         # a bf16 checkpoint on a bf16 CPU
    (CPU_BF16, TINY_FP32, "cpu", "float32", None),        # an fp32 checkpoint keeps fp32
    (CPU_BF16, CheckpointInfo(), "cpu", "float32", None),  # unknown stored dtype: fp32
    (DeviceCapabilities(cuda=(A100,)), QWEN_7B, "cuda:0", "bfloat16", "cuda:0"),
    (DeviceCapabilities(cuda=(T4,)), TINY_FP32, "cuda:0", "float16", "cuda:0"),  # no bf16 on the GPU
    (DeviceCapabilities(cuda=(SMALL,)), QWEN_7B, "cuda:0", "bfloat16", "auto"),  # 15.4 GiB > 85% of 15 GiB
    (DeviceCapabilities(cuda=(SMALL,)), CheckpointInfo(stored_dtype="bfloat16"), "cuda:0", "bfloat16", "cuda:0"),
])
def test_defaults_follow_the_machine(caps, ckpt, device, dtype, device_map):
    p = place(caps, ckpt)
    assert (p.device, p.dtype, p.device_map, p.attn) == (device, dtype, device_map, "sdpa")
    assert p.reasons  # the log line says why


def test_a_model_larger_than_one_gpu_is_spread_and_says_with_what_numbers():
    two = DeviceCapabilities(cuda=(SMALL, SMALL.model_copy(update={"index": 1})))
    p = place(two, QWEN_7B)
    assert p.device_map == "auto"
    assert any("15.4 GiB in bfloat16" in r and "85%" in r and "2 GPU(s)" in r for r in p.reasons), p.reasons
    # the same model in float32 needs twice as much: still spread; fits once enough memory is free
    assert place(two, QWEN_7B, dtype="float32").device_map == "auto"
    assert place(DeviceCapabilities(cuda=(A100,)), QWEN_7B, dtype="float32").device_map == "cuda:0"


def test_an_explicit_device_is_kept_with_a_warning_when_too_small():
    p = place(DeviceCapabilities(cuda=(SMALL,)), QWEN_7B, device="cuda:0")
    assert p.device_map == "cuda:0" and any(r.startswith("warning:") and "device=auto" in r for r in p.reasons)


def test_explicit_options_win():
    caps = DeviceCapabilities(cuda=(A100,), cpu_bf16=True)
    assert place(caps, device="cpu").dtype == "float32" and place(caps, device="cpu").device_map is None
    p = place(caps, device="cpu", dtype="bfloat16", attn="eager")
    assert (p.device, p.dtype, p.attn) == ("cpu", "bfloat16", "eager")
    assert place(caps, dtype="auto").dtype == "auto"
    assert place(caps, device="auto").device_map == "auto"
    assert place(CPU_ONLY, device="auto").device_map is None  # nothing to spread over


def test_a_device_the_machine_lacks_is_refused_with_the_fix():
    with pytest.raises(BackendUnavailableError, match="torch sees no CUDA device.*use device=cpu"):
        place(CPU_ONLY, device="cuda")
    with pytest.raises(BackendUnavailableError, match="sees 1 CUDA device.*cuda:0"):
        place(DeviceCapabilities(cuda=(A100,)), device="cuda:3")
    with pytest.raises(BackendUnavailableError, match="no MPS"):
        place(CPU_ONLY, device="mps")
    with pytest.raises(BackendUnavailableError, match="T4.*does not support bfloat16"):
        place(DeviceCapabilities(cuda=(T4,)), dtype="bfloat16")


def test_weight_bytes_follow_the_dtype():
    assert QWEN_7B.weight_bytes("bfloat16") == QWEN_7B.n_params * 2
    assert QWEN_7B.weight_bytes("float32") == QWEN_7B.n_params * 4
    assert QWEN_7B.weight_bytes("auto") == QWEN_7B.n_params * 2  # stored in bf16
    assert CheckpointInfo().weight_bytes("float32") is None


def test_cpu_bf16_flags():
    assert cpu_has_native_bf16("processor: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    assert cpu_has_native_bf16("flags : fpu amx_bf16 amx_tile\n")
    assert not cpu_has_native_bf16("flags : fpu sse avx2 avx512f\n")
    assert not cpu_has_native_bf16("Features : fp asimd\n")  # aarch64: unmeasured, stays fp32


def _write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    header = {name: {"dtype": dt, "shape": shape, "data_offsets": [0, 0]} for name, (dt, shape) in tensors.items()}
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def test_checkpoint_info_reads_headers_and_config_without_loading(tmp_path: Path):
    _write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": ("BF16", [1000, 10]), "b": ("F32", [5])})
    _write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"c": ("BF16", [3, 3])})
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"torch_dtype": "bfloat16"}}))
    assert checkpoint_info(tmp_path) == CheckpointInfo(n_params=10_014, stored_dtype="bfloat16")
    (tmp_path / "config.json").write_text("{}")  # no dtype in the config: the dominant one in the weights
    assert checkpoint_info(tmp_path).stored_dtype == "bfloat16"
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"\x01")  # truncated: size unknown, no crash
    assert checkpoint_info(tmp_path).n_params is None
