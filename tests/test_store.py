"""Tests for awares_tool.images.store.ImageStore: LRU eviction, the byte bound, content ids, threads."""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image

from awares_tool.errors import ImageDecodeError, ImageNotFoundError, ImageTooLargeError
from awares_tool.images import ImageLimits, open_image
from awares_tool.images.store import ImageStore, entry_nbytes


def _png(color: tuple[int, int, int], size: tuple[int, int] = (10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _rgb(value: int, size: tuple[int, int] = (10, 10)) -> Image.Image:
    """An in-memory image: it costs exactly w * h * 3, whatever its content."""
    return Image.new("RGB", size, (value, value, value))


def _cost(source) -> int:
    return entry_nbytes(open_image(source))


def test_cost_is_decoded_rgb_plus_encoded_bytes():
    data = _png((1, 2, 3), (20, 10))
    assert _cost(data) == 20 * 10 * 3 + len(data)
    assert entry_nbytes(open_image(Image.new("RGB", (20, 10)))) == 600  # no encoded bytes kept


def test_same_content_same_id_and_no_duplicate_storage(tmp_path):
    data = _png((200, 0, 0))
    path = tmp_path / "a.png"
    path.write_bytes(data)
    store = ImageStore()
    ids = {store.put(data), store.put(path), store.put(str(path)), store.put(bytearray(data))}
    assert len(ids) == 1 and len(store) == 1
    assert store.nbytes == _cost(data)
    image_id = ids.pop()
    assert image_id in store and store.get(image_id).id == image_id
    assert store.get(image_id).image.getpixel((5, 5)) == (200, 0, 0)
    assert store.put(_png((0, 200, 0))) != image_id and len(store) == 2


def test_lru_eviction_order_and_byte_bound():
    images = [_rgb(i) for i in range(5)]
    cost = 300
    store = ImageStore(max_bytes=3 * cost)
    a, b, c = (store.put(d) for d in images[:3])
    assert store.ids() == [a, b, c] and store.nbytes == 3 * cost
    store.get(a)  # a becomes the most recently used, b the least
    d = store.put(images[3])
    assert b not in store and store.ids() == [c, a, d]
    store.put(images[2])  # putting known content again also counts as a use
    e = store.put(images[4])
    assert a not in store and store.ids() == [d, c, e]
    assert store.nbytes == 3 * cost <= store.max_bytes and len(store) == 3


def test_byte_bound_with_mixed_sizes():
    store = ImageStore(max_bytes=50_000)
    for i in range(40):
        store.put(_png((i, 0, 0), (10 + 7 * i % 60, 20 + 3 * i % 50)))
        assert store.nbytes <= store.max_bytes
        assert store.nbytes == sum(entry_nbytes(store.get(k)) for k in store.ids())
    assert 1 < len(store) < 40


def test_unknown_or_evicted_id_is_typed_error():
    store = ImageStore(max_bytes=300)
    first = store.put(_rgb(0))
    store.put(_rgb(9))  # evicts the first
    for image_id in (first, "0123456789abcdef"):
        with pytest.raises(ImageNotFoundError, match=rf"unknown image id '{image_id}'.*evicted"):
            store.get(image_id)


def test_item_larger_than_budget_is_refused_and_store_untouched():
    small = _png((1, 1, 1))
    store = ImageStore(max_bytes=_cost(small) * 2)
    kept = store.put(small)
    with pytest.raises(ImageTooLargeError, match="max_bytes"):
        store.put(_png((2, 2, 2), (100, 100)))
    assert store.ids() == [kept] and store.nbytes == _cost(small)


def test_bad_sources_and_limits_propagate():
    store = ImageStore(limits=ImageLimits(max_pixels=50))
    with pytest.raises(ImageTooLargeError):
        store.put(_png((0, 0, 0), (10, 10)))
    assert store.put(_png((0, 0, 0), (5, 5))) in store
    assert store.put(_png((0, 0, 0), (10, 10)), limits=ImageLimits()) in store
    with pytest.raises(ImageDecodeError):
        store.put(b"not an image")
    assert len(store) == 2


def test_discard_clear_and_repr():
    store = ImageStore()
    a = store.put(_png((1, 0, 0)))
    b = store.put(_png((2, 0, 0)))
    store.discard(a)
    store.discard("missing")
    assert a not in store and store.ids() == [b] and store.nbytes == _cost(_png((2, 0, 0)))
    store.clear()
    assert len(store) == 0 and store.nbytes == 0 and "0 images" in repr(store)
    with pytest.raises(ValueError):
        ImageStore(max_bytes=0)


def test_concurrent_puts_and_gets_keep_the_accounting_exact():
    images = [_rgb(i) for i in range(24)]
    cost = 300
    store = ImageStore(max_bytes=8 * cost)
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(60):
                image_id = store.put(images[(offset + i) % len(images)])
                try:
                    store.get(image_id)
                except ImageNotFoundError:
                    pass  # another thread may evict it in between; that is allowed
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k * 5,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store) == 8 and store.nbytes == 8 * cost == len(store.ids()) * cost
