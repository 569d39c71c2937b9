"""Reading cell images of any common format and mode as 8-bit RGB, and the cache's preprocessing."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale a grey or colour array of any depth to uint8."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        bits = 16 if array.max(initial=0) > 255 or array.dtype.itemsize >= 2 else 8
        if bits == 16 and array.max(initial=0) <= 255:
            return array.astype(np.uint8)
        return (array.astype(np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)
    array = array.astype(np.float64)
    lo, hi = np.nanmin(array), np.nanmax(array)
    if 0.0 <= lo and hi <= 1.0:
        return (array * 255.0).round().astype(np.uint8)
    span = hi - lo if hi > lo else 1.0
    return ((array - lo) / span * 255.0).round().clip(0, 255).astype(np.uint8)


def _array_to_rgb(array: np.ndarray) -> Image.Image:
    array = _to_uint8(np.squeeze(array))
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        array = np.moveaxis(array, 0, 2)  # planar TIFF
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[2] >= 4:
        rgb, alpha = array[..., :3].astype(np.float64), array[..., 3:4].astype(np.float64) / 255.0
        array = (rgb * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]), mode="RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Grey, RGBA, palette, 16-bit, float and CMYK images become 8-bit RGB (alpha over white)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(image))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


MAX_PIXELS = 64_000_000  # a cell image is well under a megapixel; more is a slide or a decompression bomb
MAX_FILE_BYTES = 256 * 2**20  # a cell image is kilobytes; a file this large is not one (read no further)


def read_image_bytes(path: Path) -> bytes:
    """The bytes of an image file, refused (``OSError``) before reading when it is far too large for a cell."""
    with open(path, "rb") as handle:  # at most one byte past the limit, whatever stat says (a FIFO, a device)
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise TooLarge(
            f"more than {MAX_FILE_BYTES / 2**20:.0f} MB, far more than a cell image; crop it to the cell or remove it"
        )
    return data


class TooLarge(OSError):
    """An image far larger than a cell image: refused before it is decoded."""


def _too_many_pixels(width: int, height: int) -> TooLarge | None:
    if width * height <= MAX_PIXELS:
        return None
    return TooLarge(
        f"{width}x{height} pixels is far more than a cell image (limit {MAX_PIXELS / 1e6:.0f} Mpx); crop it to "
        "the cell or remove it"
    )


def decode(data: bytes, name: str = "", draft_size: int | None = None) -> Image.Image:
    """Decode image bytes to an 8-bit RGB PIL image; raises ``OSError`` on unreadable or truncated data.

    ``draft_size`` lets JPEG decode at a reduced scale that is still at least that many pixels.
    """
    try:
        image = Image.open(io.BytesIO(data))
        if (too_many := _too_many_pixels(image.width, image.height)) is not None:
            raise too_many
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()
    except TooLarge:
        raise
    except Image.DecompressionBombError as bomb:
        raise OSError(f"{bomb}; crop it to the cell or remove it") from None
    except UnidentifiedImageError as pil_error:
        if Path(name).suffix.lower() in (".tif", ".tiff"):
            return _decode_tiff(data, pil_error)
        raise OSError(f"not a recognised image format ({len(data)} bytes)") from pil_error
    except (OSError, ValueError, SyntaxError) as pil_error:
        if Path(name).suffix.lower() in (".tif", ".tiff"):
            return _decode_tiff(data, pil_error)
        raise OSError(str(pil_error)) from pil_error
    if image.mode in ("RGB;16", "RGBA;16") or (image.mode == "RGB" and image.format == "TIFF" and _tiff_bits(data) > 8):
        return _decode_tiff(data, None)
    return to_rgb(image)


def _tiff_bits(data: bytes) -> int:
    try:
        import tifffile

        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            return int(tif.pages[0].bitspersample)
    except Exception:
        return 8


def _decode_tiff(data: bytes, pil_error: Exception | None) -> Image.Image:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            too_many = _too_many_pixels(int(page.imagewidth), int(page.imagelength))  # before decoding
            if too_many is None and int(page.nbytes) > MAX_PIXELS * 4:  # channels, depth, samples counted too
                too_many = TooLarge(f"{int(page.nbytes) / 2**20:,.0f} MB of pixels is far more than a cell image")
            if too_many is None:
                array = page.asarray()
    except Exception as error:
        raise OSError(f"cannot decode TIFF: {pil_error or error}") from error
    if too_many is not None:
        raise too_many
    return _array_to_rgb(np.asarray(array))


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 array."""
    path = Path(path)
    return np.asarray(decode(read_image_bytes(path), path.name))


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True)
class Preprocessing:
    """How the cache turns a cell image into a square array.

    The image is centre-cropped to a square, resized to ``size`` and, if ``crop`` is set, its
    central ``crop`` pixels are kept (the cell sits in the centre).
    """

    size: int = 224
    crop: int | None = None

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"image size must be at least 8 px, got {self.size}")
        if self.crop is not None and not 0 < self.crop <= self.size:
            raise ValueError(f"crop must be between 1 and size ({self.size}), got {self.crop}")

    @property
    def output_size(self) -> int:
        return self.crop or self.size

    def apply(self, image: Image.Image) -> np.ndarray:
        w, h = image.size
        side = min(w, h)
        if (w, h) != (side, side):
            left, top = (w - side) // 2, (h - side) // 2
            image = image.crop((left, top, left + side, top + side))
        if side != self.size:
            image = image.resize((self.size, self.size), Image.Resampling.BILINEAR, reducing_gap=None)
        array = np.asarray(image, dtype=np.uint8)
        if self.crop is not None and self.crop != self.size:
            o = (self.size - self.crop) // 2
            array = array[o : o + self.crop, o : o + self.crop]
        return np.ascontiguousarray(array)

    def load(self, data: bytes, name: str = "") -> np.ndarray:
        """Decode and preprocess image bytes."""
        return self.apply(decode(data, name, draft_size=self.size))
