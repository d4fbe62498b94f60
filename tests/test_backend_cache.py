"""A spec string resolves to a backend loaded once per process, shared by every caller, and released on demand."""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from awares_tool.backends.cache import BackendCache


class _Closable:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_concurrent_requests_for_one_key_load_once():
    cache, loads = BackendCache(), []

    def load():
        loads.append(1)
        time.sleep(0.05)  # long enough for every thread to arrive while the first one loads
        return _Closable()

    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("k", load))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len(got) == 8 and all(g is got[0] for g in got)


def test_failed_loads_are_not_cached_and_closed_backends_reload():
    cache, calls = BackendCache(), []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk busy")
        return _Closable()

    with pytest.raises(OSError):
        cache.get("k", flaky)
    first = cache.get("k", flaky)
    assert cache.get("k", flaky) is first and len(calls) == 2
    first.close()  # closed by its user (e.g. a `with` block): the next request loads anew
    assert not cache.contains("k")
    second = cache.get("k", flaky)
    assert second is not first and len(calls) == 3


def test_clear_closes_one_or_all():
    cache = BackendCache()
    a, b = cache.get("a", _Closable), cache.get("b", _Closable)
    assert len(cache) == 2
    assert cache.clear("a") == 1 and a.closed and not b.closed
    assert cache.clear("a") == 0
    assert cache.clear() == 1 and b.closed and len(cache) == 0


# -- the real thing: a tiny Qwen2.5-VL through resolve_backend -------------------------------------------------
@pytest.fixture()
def tiny_spec():
    pytest.importorskip("transformers")
    from awares_tool.backends import clear_cache
    from awares_train.testing import tiny_vlm_path

    spec = f"transformers:{tiny_vlm_path('qwen2.5-vl')}"
    clear_cache(spec)
    yield spec
    clear_cache(spec)


@pytest.fixture()
def load_spy(monkeypatch):
    """Counts from_pretrained calls; wraps the real loader (the model really loads)."""
    import transformers

    real = transformers.AutoModelForImageTextToText.from_pretrained
    calls: list[tuple[str, dict]] = []

    def spy(path, *args, **kwargs):
        calls.append((str(path), kwargs))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", spy)
    return calls


@pytest.mark.hf
@pytest.mark.slow
def test_crop_on_demand_in_a_loop_loads_the_model_once_and_every_path_shares_it(tiny_spec, load_spy):
    from awares_tool import crop_on_demand
    from awares_tool.adapters.common import ImageService
    from awares_tool.backends import clear_cache, is_cached, resolve_backend
    from awares_tool.ui.callbacks import BackendPool

    img = Image.new("RGB", (224, 224), "white")
    results = [crop_on_demand(img, "What is here?", backend=tiny_spec, max_new_tokens=2) for _ in range(2)]
    assert len(load_spy) == 1, load_spy
    assert all(r.backend == results[0].backend for r in results)
    be = resolve_backend(tiny_spec)
    assert BackendPool().get(tiny_spec) is be and ImageService(backend=tiny_spec).backend is be
    assert len(load_spy) == 1
    # The cache keys what was asked, not what it resolved to: the same placement spelled out is another entry
    # (spelled from what this machine chose: the CPU here, a GPU in bfloat16 where there is one).
    p = be.placement
    spelled = resolve_backend(f"{tiny_spec}?device={p.device}&dtype={p.dtype}&attn={p.attn}")
    assert spelled is not be and spelled.placement.describe() == p.describe()
    assert len(load_spy) == 2 and is_cached(tiny_spec)

    assert clear_cache(tiny_spec) == 1 and be.closed and not is_cached(tiny_spec)
    crop_on_demand(img, "What is here?", backend=tiny_spec, max_new_tokens=2)
    assert len(load_spy) == 3  # released, then loaded again on demand
    clear_cache(tiny_spec + "?device=cpu&attn=sdpa")


@pytest.mark.hf
@pytest.mark.slow
def test_options_reach_from_pretrained_and_a_missing_device_fails_before_loading(tiny_spec, load_spy):
    import torch

    from awares_tool.backends import resolve_backend
    from awares_tool.errors import BackendUnavailableError

    be = resolve_backend(tiny_spec, dtype="bf16", attn="eager", device="cpu")
    assert load_spy[-1][1]["dtype"] is torch.bfloat16 and load_spy[-1][1]["attn_implementation"] == "eager"
    assert {p.dtype for p in be.model.parameters()} == {torch.bfloat16} and be.dtype == "bfloat16"
    assert be.model.config._attn_implementation == "eager"
    n = len(load_spy)
    from awares_tool.backends.transformers import TransformersBackend
    from awares_tool.errors import BackendSpecError

    with pytest.raises(BackendSpecError, match="bad value 'bf17' for option 'dtype'"):
        TransformersBackend(tiny_spec.partition(":")[2], dtype="bf17")  # the constructor checks the same way
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="no CUDA device"):
            resolve_backend(tiny_spec, device="cuda")
        assert len(load_spy) == n  # refused before any weights were read
    from awares_tool.backends import clear_cache

    clear_cache(tiny_spec, dtype="bf16", attn="eager", device="cpu")


@pytest.mark.hf
@pytest.mark.slow
def test_checkpoint_info_counts_the_real_parameters(tiny_spec):
    from awares_tool.backends import resolve_backend
    from awares_tool.backends.placement import checkpoint_info

    be = resolve_backend(tiny_spec)
    info = checkpoint_info(tiny_spec.partition(":")[2])
    assert info.n_params == sum(p.numel() for p in be.model.parameters()) and info.stored_dtype == "float32"


@pytest.mark.hf
def test_the_embedded_model_is_cached_by_where_it_lies(monkeypatch, tmp_path):
    pytest.importorskip("transformers")
    from awares_tool.backends import default_model_path, is_cached, resolve_backend
    from awares_tool.errors import BackendUnavailableError

    if not (default_model_path() / "config.json").is_file():
        pytest.skip("no embedded model in this checkout")
    be = resolve_backend(None)
    assert resolve_backend("default") is be and is_cached(None) and be.name == "default:tiny-awares"
    monkeypatch.setattr("awares_tool.backends._MODELS_DIR", tmp_path)  # the folder went away
    assert not is_cached(None)
    with pytest.raises(BackendUnavailableError, match="embedded default model is missing"):
        resolve_backend(None)
