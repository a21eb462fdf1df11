"""The data contract every part of veer speaks.

Classes
    0  background  paper, grid, borders, text, depth numbers, hatching,
                   stamps, scribbles: everything that is not a curve trace
    1  curve1      the solid-line trace of a track
    2  curve2      the dashed or dotted trace of a track

Mask files
    A mask is a single-channel 8-bit PNG of the image's size whose pixels are
    0, 1 or 2. Truth masks may also hold 255 ("ignore"), used where the two
    curves overlap; metrics skip those pixels. Predicted masks never hold 255.
"""

from __future__ import annotations

import io as _io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from veer.errors import MaskError

BACKGROUND = 0
CURVE1 = 1
CURVE2 = 2
IGNORE = 255
NUM_CLASSES = 3
CURVE_CLASSES = (CURVE1, CURVE2)


@dataclass(frozen=True)
class ClassInfo:
    index: int
    name: str
    label: str
    description: str
    color: str  # hex, used by every figure and overlay


CLASSES = (
    ClassInfo(BACKGROUND, "background", "Background",
              "paper, grid, borders, text, hatching, stamps: not a curve", "#d9d9d9"),
    ClassInfo(CURVE1, "curve1", "Curve 1 (solid)",
              "the solid-line trace of a track", "#d55e00"),
    ClassInfo(CURVE2, "curve2", "Curve 2 (dashed/dotted)",
              "the dashed or dotted trace of a track", "#0072b2"),
)
CLASS_NAMES = tuple(c.name for c in CLASSES)
CLASS_COLORS = {c.index: c.color for c in CLASSES}
IGNORE_COLOR = "#f0e442"

PathLike = Union[str, Path]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


def palette() -> np.ndarray:
    """A 256x3 uint8 lookup table: class index -> display colour."""
    lut = np.zeros((256, 3), np.uint8)
    for c in CLASSES:
        lut[c.index] = hex_to_rgb(c.color)
    lut[IGNORE] = hex_to_rgb(IGNORE_COLOR)
    return lut


def colorize(mask: np.ndarray) -> np.ndarray:
    """Map a label mask (H, W) to an RGB image (H, W, 3) in the class colours."""
    return palette()[np.asarray(mask, np.uint8)]


def validate_mask(mask: np.ndarray, image_shape: tuple[int, ...] | None = None, *,
                  allow_ignore: bool = True, name: str = "mask") -> np.ndarray:
    """Check a mask array against the contract and return it as uint8 (H, W).

    ``image_shape`` is the shape of the scan it belongs to ((H, W) or
    (H, W, C)); when given, the mask must have the same height and width.
    Raises :class:`MaskError` with a message naming ``name`` otherwise.
    """
    arr = np.asarray(mask)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise MaskError(f"{name}: a mask must be a single-channel image, "
                        f"got an array of shape {arr.shape}")
    if arr.size == 0:
        raise MaskError(f"{name}: the mask is empty (shape {arr.shape})")
    if arr.dtype.kind not in "uib":
        raise MaskError(f"{name}: mask values must be integers, got {arr.dtype}")
    if image_shape is not None and tuple(arr.shape) != tuple(image_shape[:2]):
        h, w = image_shape[:2]
        raise MaskError(f"{name}: the mask is {arr.shape[1]}x{arr.shape[0]} px "
                        f"but the image is {w}x{h} px; they must be the same size")
    allowed = [BACKGROUND, CURVE1, CURVE2] + ([IGNORE] if allow_ignore else [])
    values = np.unique(arr)
    bad = [int(v) for v in values if int(v) not in allowed]
    if bad:
        shown = ", ".join(str(v) for v in bad[:8]) + (" ..." if len(bad) > 8 else "")
        what = "0, 1, 2 or 255 (ignore)" if allow_ignore else "0, 1 or 2"
        raise MaskError(f"{name}: mask values must be {what}; found {shown}")
    return arr.astype(np.uint8, copy=False)


def read_mask(source: PathLike | bytes | BinaryIO, image_shape: tuple[int, ...] | None = None,
              *, allow_ignore: bool = True, name: str | None = None) -> np.ndarray:
    """Read a mask PNG (path, bytes or file object) and validate it.

    Accepts 8-bit single-channel images (PIL modes ``L`` and ``P``, whose
    palette indices are taken as the labels). Anything else, a file that is not
    an image, or values outside the contract raise :class:`MaskError`.
    """
    from PIL import Image, UnidentifiedImageError

    label = name or _source_name(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            fh: BinaryIO = _io.BytesIO(source)
        elif isinstance(source, (str, Path)):
            fh = open(source, "rb")
        else:
            fh = source
        with Image.open(fh) as img:
            if img.mode not in ("L", "P"):
                raise MaskError(f"{label}: a mask must be a single-channel 8-bit PNG "
                                f"(mode L); this file is mode {img.mode}")
            arr = np.array(img)
    except FileNotFoundError:
        raise MaskError(f"{label}: no such file") from None
    except UnidentifiedImageError:
        raise MaskError(f"{label}: not an image file; a mask must be a PNG") from None
    except MaskError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise MaskError(f"{label}: the mask file is damaged or truncated ({exc})") from None
    return validate_mask(arr, image_shape, allow_ignore=allow_ignore, name=label)


def write_mask(path: PathLike, mask: np.ndarray, *, allow_ignore: bool = False) -> Path:
    """Validate ``mask`` and write it as a single-channel 8-bit PNG, atomically."""
    from PIL import Image

    from veer.io import atomic_write

    arr = validate_mask(mask, allow_ignore=allow_ignore, name=str(path))
    path = Path(path)
    with atomic_write(path) as tmp:
        Image.fromarray(arr, mode="L").save(tmp, format="PNG")
    return path


def _source_name(source) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return getattr(source, "name", None) or "mask"
