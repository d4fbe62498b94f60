"""Where a transformers model runs and in which dtype: one pure decision, and the facts it is made from.

:func:`choose_placement` takes the user's options, what the machine offers (:class:`DeviceCapabilities`) and
what the checkpoint holds (:class:`CheckpointInfo`) and returns a :class:`Placement`. It reads nothing
itself, so every branch is tested with made-up machines; :func:`detect_capabilities` and
:func:`checkpoint_info` gather the real facts.

Defaults, when the user sets nothing:

- **GPU** (``torch.cuda.is_available()``): ``cuda:0`` in bfloat16, or float16 on GPUs without bf16 (before
  Ampere). If the weights need more than :data:`WEIGHTS_SHARE` of the GPU's free memory, the model is spread
  with accelerate's ``device_map="auto"`` over every visible GPU (then CPU RAM).
- **CPU**: float32, except bfloat16 for checkpoints stored in bf16/fp16 on CPUs with native bf16 instructions
  (``avx512_bf16`` / ``amx_bf16``). Measured on this project's AMD EPYC (avx512_bf16, torch 2.13, one thread):
  a 1024x1024 matmul 2.35x faster in bf16 (26.5 vs 11.2 ms); a 1.3B Qwen2.5-VL-like model's prefill 2.3-3.5x
  faster and half the memory (../shared/notes/ml-stack.md). Checkpoints stored in float32 (this package's tiny
  models, models trained on CPU) keep float32: they were trained and measured in it (the embedded model's card),
  and at their size bf16 buys little (the embedded model answered 60 test questions identically in both, 11.2 s
  fp32 vs 10.0 s bf16). On CPUs without bf16 instructions torch emulates bf16 matmuls; that path is expected to
  be slower than float32 and is not measured here, so those CPUs keep float32.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..errors import BackendUnavailableError
from .spec import TransformersOptions

__all__ = [
    "WEIGHTS_SHARE",
    "CudaDevice",
    "DeviceCapabilities",
    "CheckpointInfo",
    "Placement",
    "choose_placement",
    "detect_capabilities",
    "cpu_has_native_bf16",
    "checkpoint_info",
]

log = logging.getLogger(__name__)

#: The share of one GPU's free memory the weights may take before the model is spread over devices: the
#: rest is left for activations, the vision tower's patches and the KV cache.
WEIGHTS_SHARE = 0.85
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}
_CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}
_GIB = 1024**3

DType = Literal["auto", "float32", "bfloat16", "float16"]


class CudaDevice(BaseModel):
    """One visible CUDA (or ROCm) device."""

    index: int
    free_bytes: int
    total_bytes: int
    bf16: bool
    name: str = ""


class DeviceCapabilities(BaseModel):
    """What the machine offers a model."""

    model_config = ConfigDict(frozen=True)

    cuda: tuple[CudaDevice, ...] = ()
    cpu_bf16: bool = False
    mps: bool = False


class CheckpointInfo(BaseModel):
    """What a checkpoint holds; None where it could not be read (a hub id offline, no safetensors)."""

    n_params: int | None = None
    stored_dtype: str | None = None

    def weight_bytes(self, dtype: str) -> int | None:
        """Bytes of the weights once loaded in ``dtype`` (``"auto"``: the stored dtype)."""
        if self.n_params is None:
            return None
        size = _BYTES.get(self.stored_dtype or "float32", 4) if dtype == "auto" else _BYTES[dtype]
        return self.n_params * size


class Placement(BaseModel):
    """Where and how to load a model.

    Attributes:
        device: Where inputs go (``cpu``, ``cuda:0``, ``mps``); with ``device_map="auto"`` the first GPU.
        dtype: ``float32``, ``bfloat16``, ``float16``, or ``auto`` (the checkpoint's own).
        attn: The attention implementation passed to ``from_pretrained``.
        device_map: Passed to ``from_pretrained``: ``"auto"`` (spread), a device (load straight onto that
            GPU), or None (load on CPU and stay there, or move with ``.to(device)``).
        reasons: Why each choice was made, in words (logged when the model loads).
    """

    model_config = ConfigDict(frozen=True)

    device: str
    dtype: DType
    attn: str
    device_map: str | None = None
    reasons: tuple[str, ...] = ()

    def describe(self) -> str:
        """``"cuda:0, bfloat16, sdpa"`` (``"auto over GPUs, ..."`` when spread)."""
        where = "device_map=auto" if self.device_map == "auto" else self.device
        return f"{where}, {self.dtype}, {self.attn}"


def choose_placement(options: TransformersOptions, caps: DeviceCapabilities, checkpoint: CheckpointInfo) -> Placement:
    """Decide device, dtype, attention and device map for a model (see the module docstring for the rules).

    Args:
        options: What the user asked for (None fields: choose).
        caps: What the machine offers.
        checkpoint: Size and stored dtype of the weights.

    Raises:
        BackendUnavailableError: A device that this machine does not have, or bfloat16 on a GPU without it.
    """
    reasons: list[str] = []
    req = options.device
    device_map: str | None = None
    if req == "auto":
        if caps.cuda:
            device, device_map = "cuda:0", "auto"
            reasons.append("device=auto: accelerate's device_map='auto' spreads the model over every visible GPU")
        else:
            device = "cpu"
            reasons.append("device=auto without a GPU: cpu")
    elif req is None:
        device = "cuda:0" if caps.cuda else "cpu"
        reasons.append("CUDA is available: cuda:0" if caps.cuda else "no CUDA device: cpu")
    else:
        device = _check_device(req, caps)
        reasons.append(f"device={req} as asked")
    gpu = _gpu(device, caps)

    if options.dtype is not None:
        dtype: DType = options.dtype
        if dtype == "bfloat16" and gpu is not None and not gpu.bf16:
            raise BackendUnavailableError(
                f"{device} ({gpu.name or 'this GPU'}) does not support bfloat16; use dtype=float16 or float32")
        reasons.append(f"dtype={dtype} as asked")
    elif gpu is not None:
        dtype = "bfloat16" if gpu.bf16 else "float16"
        reasons.append("bfloat16 on a GPU that supports it" if gpu.bf16 else
                       "float16: this GPU has no bfloat16 (pass dtype=float32 if answers come out garbled)")
    elif device == "cpu" and caps.cpu_bf16 and checkpoint.stored_dtype in ("bfloat16", "float16"):
        dtype = "bfloat16"
        reasons.append(f"bfloat16 on CPU: the checkpoint is stored in {checkpoint.stored_dtype} and the CPU has "
                       "bf16 instructions (2.3-3.5x faster than float32 there)")
    else:
        dtype = "float32"
        reasons.append("float32 on CPU: " + (
            "the checkpoint is stored in float32" if caps.cpu_bf16 and device == "cpu" else
            "no native bf16 instructions on this CPU" if device == "cpu" else f"the default on {device}"))

    if gpu is not None and device_map is None:
        need = checkpoint.weight_bytes(dtype)
        room = WEIGHTS_SHARE * gpu.free_bytes
        if need is not None and need > room:
            size = f"the weights ({need / _GIB:.1f} GiB in {dtype}) exceed {WEIGHTS_SHARE:.0%} of {device}'s free " \
                   f"memory ({gpu.free_bytes / _GIB:.1f} GiB)"
            if req is None:
                device_map = "auto"
                reasons.append(f"{size}: spread with device_map='auto' over "
                               f"{len(caps.cuda)} GPU(s)" + (" and CPU RAM" if len(caps.cuda) == 1 else ""))
            else:
                reasons.append(f"warning: {size}; loading may run out of memory (device=auto spreads it)")
        if device_map is None:
            device_map = device  # load the weights straight onto the GPU, never all of them into CPU RAM first
    return Placement(device=device, dtype=dtype, attn=options.attn or "sdpa", device_map=device_map,
                     reasons=tuple(reasons))


def _check_device(req: str, caps: DeviceCapabilities) -> str:
    if req == "cpu":
        return "cpu"
    if req == "mps":
        if not caps.mps:
            raise BackendUnavailableError("device=mps was asked for, but this torch has no MPS device; use device=cpu")
        return "mps"
    index = int(req.partition(":")[2] or 0)
    if not caps.cuda:
        raise BackendUnavailableError(
            f"device={req} was asked for, but torch sees no CUDA device (a CPU build of torch, or no GPU); "
            "use device=cpu, or omit the device to use a GPU where there is one")
    if index >= len(caps.cuda):
        raise BackendUnavailableError(
            f"device={req} was asked for, but torch sees {len(caps.cuda)} CUDA device(s): "
            + ", ".join(f"cuda:{d.index}" for d in caps.cuda))
    return f"cuda:{index}"


def _gpu(device: str, caps: DeviceCapabilities) -> CudaDevice | None:
    if not device.startswith("cuda"):
        return None
    index = int(device.partition(":")[2] or 0)
    return next((d for d in caps.cuda if d.index == index), None)


# -- the facts ------------------------------------------------------------------------------------------------
def detect_capabilities() -> DeviceCapabilities:
    """Ask torch (and the CPU's flags) what this machine offers. Imports torch."""
    from ..errors import require_extra

    torch = require_extra("torch", "hf")
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            with torch.cuda.device(i):
                bf16 = bool(torch.cuda.is_bf16_supported(including_emulation=False))
            gpus.append(CudaDevice(index=i, free_bytes=int(free), total_bytes=int(total), bf16=bf16,
                                   name=torch.cuda.get_device_name(i)))
    mps = getattr(torch.backends, "mps", None)
    return DeviceCapabilities(cuda=tuple(gpus), cpu_bf16=cpu_has_native_bf16(),
                              mps=bool(mps is not None and mps.is_available()))


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU executes bf16 natively (x86 ``avx512_bf16`` / ``amx_bf16`` in ``/proc/cpuinfo``).

    Other platforms report False (their bf16 speed on torch is unmeasured here): CPU stays float32 there.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return bool(_CPU_BF16_FLAGS & set(line.partition(":")[2].split()))
    return False


def checkpoint_info(model: str | Path, *, need_size: bool = True) -> CheckpointInfo:
    """Parameter count and stored dtype of a local folder or hub id, read without loading the weights.

    A local folder: ``config.json`` and the safetensors headers (a few KB each). A hub id: its
    ``config.json`` through the hub cache and, if ``need_size``, the hub's safetensors metadata (network).
    Anything unreadable is left None: an unknown size keeps the model on one device.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        counts = _safetensors_counts(sorted(path.glob("*.safetensors")))
        stored = _config_dtype(path / "config.json")
    else:
        counts, stored = {}, None
        try:  # best effort: whatever fails (offline, gated, no safetensors) only means "unknown"
            from huggingface_hub import get_safetensors_metadata, hf_hub_download

            stored = _config_dtype(Path(hf_hub_download(str(model), "config.json")))
            if need_size:
                counts = {_SAFETENSORS_DTYPES.get(k, k): int(v)
                          for k, v in get_safetensors_metadata(str(model)).parameter_count.items()}
        except Exception as e:  # noqa: BLE001
            log.info("could not read the size of %s before loading (%s); assuming it fits one device", model, e)
    if stored is None and counts:
        stored = max(counts, key=lambda k: counts[k])
    return CheckpointInfo(n_params=sum(counts.values()) or None, stored_dtype=stored)


def _config_dtype(config: Path) -> str | None:
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for section in (cfg, cfg.get("text_config") or {}):
        value = section.get("dtype") or section.get("torch_dtype")
        if isinstance(value, str):
            return value.removeprefix("torch.")
    return None


def _safetensors_counts(files: list[Path]) -> dict[str, int]:
    """Elements per dtype over the files' headers (8-byte length, then a JSON table of tensors)."""
    counts: dict[str, int] = {}
    for f in files:
        try:
            with f.open("rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                if n > 100 * 1024 * 1024:
                    raise ValueError(f"header of {n} bytes")
                header = json.loads(fh.read(n))
        except (OSError, ValueError, struct.error) as e:
            log.info("cannot read the safetensors header of %s (%s); its size is unknown", f, e)
            return {}
        for name, t in header.items():
            if name != "__metadata__":
                dtype = _SAFETENSORS_DTYPES.get(t["dtype"], t["dtype"])
                counts[dtype] = counts.get(dtype, 0) + math.prod(t["shape"])
    return counts
