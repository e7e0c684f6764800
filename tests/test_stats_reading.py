"""seglib.stats.read_ahead: files decoded in threads, in order, a bounded way ahead, feeding mean_std."""

import threading
import time

import numpy as np
import pytest
from PIL import Image

from seglib import stats
from seglib.competitions.base import decode_image
from seglib.errors import SeglibError


def test_results_keep_the_order_of_the_items():
    def slow_square(value):
        time.sleep(0.001 * ((7 * value) % 5))  # later items often finish first
        return value * value

    assert list(stats.read_ahead(slow_square, range(40), workers=4, buffer=6)) == [v * v for v in range(40)]


def test_several_iterables_like_map():
    assert list(stats.read_ahead(lambda a, b: f"{a}{b}", "abc", [1, 2, 3, 4])) == ["a1", "b2", "c3"]
    assert list(stats.read_ahead(str, [])) == []


def test_reads_a_bounded_way_ahead():
    pulled, lock = [], threading.Lock()
    started = []

    def items():
        for index in range(100):
            pulled.append(index)
            yield index

    def read(index):
        with lock:
            started.append(index)
        return index

    reader = stats.read_ahead(read, items(), workers=2, buffer=3)
    assert pulled == []  # nothing is read before the first result is asked for
    for expected in range(10):
        assert next(reader) == expected
        time.sleep(0.02)  # a slow consumer: the workers would run far ahead if nothing bounded them
        # The item held by the caller plus at most `buffer` more.
        assert len(pulled) <= expected + 1 + 3
        assert len(started) <= expected + 1 + 3
    reader.close()
    time.sleep(0.02)
    assert len(started) <= 10 + 3 and len(pulled) <= 10 + 3


def test_a_reading_error_names_the_file_and_stops_reading(tmp_path):
    paths = []
    for index in range(6):
        path = tmp_path / f"image_{index}.jpg"
        Image.fromarray(np.full((8, 8, 3), index * 40, dtype=np.uint8)).save(path)
        paths.append(path)
    paths[2].write_bytes(b"not a jpg")
    read = []

    def read_image(path):
        read.append(path.name)
        return decode_image(path.read_bytes(), name=path.name)

    reader = stats.read_ahead(read_image, paths, workers=1, buffer=1)
    assert next(reader).mean() == 0 and next(reader).mean() == 40
    with pytest.raises(ValueError, match="image_2.jpg: cannot decode") as raised:
        next(reader)
    if hasattr(raised.value, "add_note"):  # Python 3.11+
        assert raised.value.__notes__ == [f"raised by read_image({paths[2]!r})"]
    assert read == ["image_0.jpg", "image_1.jpg", "image_2.jpg"]  # nothing past the bad file was read
    with pytest.raises(StopIteration):
        next(reader)


def test_an_error_that_does_not_name_the_item_gets_a_note():
    def read(name):
        if name == "b.png":
            raise OSError("boom")
        return name

    with pytest.raises(OSError, match="boom") as raised:
        list(stats.read_ahead(read, ["a.png", "b.png", "c.png"]))
    notes = getattr(raised.value, "__notes__", None)
    if notes is not None:  # Python 3.11+
        assert notes == ["raised by read('b.png')"]


def test_bad_arguments_raise():
    with pytest.raises(SeglibError, match="workers=0"):
        stats.read_ahead(str, [1], workers=0)
    with pytest.raises(SeglibError, match="buffer=0"):
        stats.read_ahead(str, [1], buffer=0)


def test_mean_std_of_files_read_ahead_matches_sequential_reading(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for index in range(12):
        path = tmp_path / f"{index}.jpg"
        Image.fromarray(rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)

    def read(path):
        return decode_image(path.read_bytes(), name=path.name)

    threaded = stats.mean_std(stats.read_ahead(read, paths, workers=3, buffer=2), batch_size=5)
    sequential = stats.mean_std((read(path) for path in paths), batch_size=5)
    stacked = np.stack([read(path) for path in paths]).astype(np.float64)
    np.testing.assert_array_equal(threaded.mean_image, sequential.mean_image)
    np.testing.assert_array_equal(threaded.std_image, sequential.std_image)
    np.testing.assert_allclose(threaded.std_image, stacked.std(axis=0), rtol=0, atol=1e-9)
    assert threaded.count == 12
