"""Every common format and mode reads as 8-bit RGB; broken files fail clearly; preprocessing sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from smearmil.data.images import Preprocessing, decode, read_rgb


def _check(array: np.ndarray, shape: tuple[int, int]) -> None:
    assert array.dtype == np.uint8
    assert array.shape == (*shape, 3)


def test_grey_png_becomes_rgb(tmp_path: Path) -> None:
    Image.new("L", (10, 7), 77).save(tmp_path / "g.png")
    a = read_rgb(tmp_path / "g.png")
    _check(a, (7, 10))
    assert (a == 77).all()


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    Image.new("RGBA", (5, 5), (0, 0, 0, 0)).save(tmp_path / "t.png")
    Image.new("RGBA", (5, 5), (200, 10, 10, 255)).save(tmp_path / "o.png")
    assert (read_rgb(tmp_path / "t.png") == 255).all()
    assert read_rgb(tmp_path / "o.png")[0, 0].tolist() == [200, 10, 10]


def test_palette_bmp(tmp_path: Path) -> None:
    Image.new("RGB", (6, 6), (10, 200, 30)).convert("P").save(tmp_path / "p.bmp")
    a = read_rgb(tmp_path / "p.bmp")
    _check(a, (6, 6))
    assert np.abs(a[0, 0].astype(int) - [10, 200, 30]).max() <= 30


def test_16_bit_grey_png_scales_to_8_bit(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(tmp_path / "d.png")
    Image.fromarray(np.full((4, 4), 257 * 100, dtype=np.uint16)).save(tmp_path / "m.png")
    assert (read_rgb(tmp_path / "d.png") == 255).all()
    assert (read_rgb(tmp_path / "m.png") == 100).all()


def test_16_bit_rgb_tiff(tmp_path: Path) -> None:
    data = np.zeros((5, 6, 3), dtype=np.uint16)
    data[..., 0] = 65535
    data[..., 2] = 257 * 50
    tifffile.imwrite(tmp_path / "c.tif", data, photometric="rgb")
    a = read_rgb(tmp_path / "c.tif")
    _check(a, (5, 6))
    assert a[0, 0].tolist() == [255, 0, 50]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "k.jpg")
    a = read_rgb(tmp_path / "k.jpg")
    _check(a, (8, 8))
    assert a[0, 0, 0] > 200 and a[0, 0, 1] < 60  # red


def test_truncated_and_garbage_files_raise_oserror(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "x.jpg")
    data = (tmp_path / "x.jpg").read_bytes()
    with pytest.raises(OSError, match="truncated"):
        decode(data[: len(data) // 2], "x.jpg")
    with pytest.raises(OSError, match="not a recognised image"):
        decode(b"\0" * 100, "y.jpg")


def test_preprocessing_square_crop_resize_and_centre_crop() -> None:
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[:, 30:] = 255  # right half white
    out = Preprocessing(size=20, crop=10).apply(Image.fromarray(image))
    assert out.shape == (10, 10, 3)
    assert out[:, :4].max() < 60 and out[:, 6:].min() > 200  # the centre of the image stays in the centre
    assert Preprocessing(size=32).apply(Image.fromarray(image)).shape == (32, 32, 3)
    with pytest.raises(ValueError):
        Preprocessing(size=32, crop=64)
