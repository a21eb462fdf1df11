"""One way in for a scan, and safe ways out for every file veer writes.

``read_scan`` accepts a path, raw bytes or a file object (a Streamlit upload),
in any format Pillow reads (PNG, JPEG, TIFF including 1-bit CCITT G4 and
multi-page, BMP, GIF) and any mode (1, L, LA, P, RGB, RGBA, CMYK, I;16, I, F),
and returns an 8-bit grayscale array: the single channel the models take.
Everything that can go wrong with a user's file becomes an ImageReadError whose
message names the file and says what to do.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np

from veer.errors import ImageReadError

DEFAULT_MAX_PIXELS = 60_000_000  # a whole 200-dpi log is about 30 Mpx
SUPPORTED = "PNG, JPEG, TIFF, BMP or GIF"
Source = Union[str, Path, bytes, bytearray, BinaryIO]


@dataclass
class Scan:
    """A scan as veer uses it."""

    gray: np.ndarray          # uint8 (H, W), 0 = black ink, 255 = white paper
    name: str                 # file name as given (for messages and output names)
    page: int                 # page read (0-based)
    n_pages: int              # pages (frames) in the file
    mode: str                 # Pillow mode of the file, e.g. "1", "L", "RGB"
    format: str | None        # Pillow format, e.g. "TIFF"
    dpi: tuple[float, float] | None

    @property
    def shape(self) -> tuple[int, int]:
        return self.gray.shape  # type: ignore[return-value]

    @property
    def megapixels(self) -> float:
        return self.gray.size / 1e6


def source_name(source: Source, name: str | None = None) -> str:
    if name:
        return name
    if isinstance(source, (str, Path)):
        return str(source)
    return getattr(source, "name", None) or "uploaded file"


def _open_bytes(source: Source, label: str) -> BinaryIO:
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ImageReadError(f"{label}: no such file")
        if path.is_dir():
            raise ImageReadError(f"{label}: is a folder, not an image file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageReadError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    else:
        try:
            if hasattr(source, "seek"):
                source.seek(0)
            data = source.read()
        except OSError as exc:
            raise ImageReadError(f"{label}: cannot be read ({exc})") from None
    if not data:
        raise ImageReadError(f"{label}: the file is empty (0 bytes); upload the scan again")
    return _io.BytesIO(data)


@contextlib.contextmanager
def _opened(source: Source, label: str, max_pixels: int):
    from PIL import Image, UnidentifiedImageError

    fh = _open_bytes(source, label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damaged metadata warnings; real damage raises below
            img = Image.open(fh)
    except UnidentifiedImageError:
        raise ImageReadError(f"{label}: not an image veer can read; save the scan as {SUPPORTED}") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"{label}: declares more pixels than veer accepts "
                             f"(limit {max_pixels / 1e6:.0f} Mpx); it may be a decompression bomb") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError(f"{label}: the file is damaged or not a supported image ({exc})") from None
    try:
        yield img
    finally:
        img.close()


def _check_size(label: str, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{label}: the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageReadError(
            f"{label}: {width}x{height} px is {width * height / 1e6:.0f} Mpx, above the limit of "
            f"{max_pixels / 1e6:.0f} Mpx; crop or downscale the scan, or raise the limit "
            f"(--max-pixels / VEER_MAX_PIXELS)")


def count_pages(source: Source, *, name: str | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """Number of pages (frames) in an image file; 1 for single-page formats."""
    label = source_name(source, name)
    with _opened(source, label, max_pixels) as img:
        return int(getattr(img, "n_frames", 1) or 1)


def max_pixels_from_env(default: int = DEFAULT_MAX_PIXELS) -> int:
    value = os.environ.get("VEER_MAX_PIXELS")
    if not value:
        return default
    try:
        return int(float(value))
    except ValueError:
        raise ImageReadError(f"VEER_MAX_PIXELS={value!r} is not a number of pixels") from None


def read_scan(source: Source, *, name: str | None = None, page: int = 0,
              max_pixels: int | None = None) -> Scan:
    """Read one page of a scan as 8-bit grayscale. See the module docstring."""
    from PIL import Image, ImageOps

    label = source_name(source, name)
    max_pixels = max_pixels_from_env() if max_pixels is None else int(max_pixels)
    with warnings.catch_warnings(), _opened(source, label, max_pixels) as img:
        warnings.simplefilter("ignore")
        n_pages = int(getattr(img, "n_frames", 1) or 1)
        if not 0 <= page < n_pages:
            raise ImageReadError(f"{label}: has {n_pages} page(s); page {page + 1} does not exist")
        _check_size(label, img.width, img.height, max_pixels)
        fmt, mode = img.format, img.mode
        dpi = img.info.get("dpi")
        try:
            if page:
                img.seek(page)
                mode = img.mode
                _check_size(label, img.width, img.height, max_pixels)
            img.load()
            if page == 0 and n_pages == 1:
                img = ImageOps.exif_transpose(img)
            gray = to_gray_image(img)
        except ImageReadError:
            raise
        except MemoryError:
            raise ImageReadError(f"{label}: too large to decode in the memory available") from None
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            msg = str(exc)
            if "truncated" in msg or "broken" in msg.lower():
                raise ImageReadError(f"{label}: the file is truncated; copy or upload it again") from None
            raise ImageReadError(f"{label}: the image data is damaged ({msg})") from None
    if gray.size == 0:
        raise ImageReadError(f"{label}: the image has no pixels")
    try:
        dpi_t = (float(dpi[0]), float(dpi[1])) if dpi else None
    except (TypeError, ValueError, IndexError):
        dpi_t = None
    return Scan(gray=gray, name=label, page=page, n_pages=n_pages, mode=mode, format=fmt, dpi=dpi_t)


def read_image(source: Source, **kwargs) -> np.ndarray:
    """Shortcut: the grayscale uint8 array of :func:`read_scan`."""
    return read_scan(source, **kwargs).gray


def to_gray_image(img) -> np.ndarray:
    """A loaded Pillow image of any mode -> uint8 (H, W) grayscale on white paper."""
    from PIL import Image

    mode = img.mode
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("LA", "La", "RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("L"), dtype=np.uint8)
    if mode in ("RGB", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return np.asarray(img.convert("RGB").convert("L"), dtype=np.uint8)
    # 16-bit, 32-bit integer and floating point: stretch the used range to 0..255
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=2)
    return stretch_to_uint8(arr)


def stretch_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Linearly map the finite range of ``arr`` to 0..255 (NaN -> white)."""
    arr = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return np.full(arr.shape, 255, np.uint8)
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    if hi <= lo:
        out = np.full(arr.shape, 255 if lo > 0 else 0, np.uint8)
    else:
        out = np.clip((arr - lo) * (255.0 / (hi - lo)), 0, 255).round().astype(np.uint8)
    out[~finite] = 255
    return out


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> uint8 gray with Pillow's ITU-R 601-2 weights."""
    if rgb.ndim == 2:
        return rgb.astype(np.uint8, copy=False)
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    return np.clip(r * 0.299 + g * 0.587 + b * 0.114 + 0.5, 0, 255).astype(np.uint8)


_STEM_RE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str, default: str = "scan") -> str:
    """A file-name stem from a user-given name that can never act as a path."""
    base = re.split(r"[\\/]", str(name))[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.strip(".") else base
    stem = _STEM_RE.sub("_", stem).strip("._-")[:120]
    return stem or default


@contextlib.contextmanager
def atomic_write(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    A run that is killed or fails half way leaves no half-written file under
    the final name (the temporary one is removed on error).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes owner-only files; outputs are ordinary files
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def save_png(path: Union[str, Path], array: np.ndarray) -> Path:
    """Write a uint8 gray (H, W) or RGB (H, W, 3) array as PNG, atomically."""
    from PIL import Image

    path = Path(path)
    with atomic_write(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
    return path


def png_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 gray or RGB array as PNG bytes (for downloads)."""
    from PIL import Image

    buf = _io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()
