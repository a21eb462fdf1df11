"""Reading scans in every format and mode a scanner produces."""

import io

import numpy as np
import pytest
from PIL import Image

from veer.errors import ImageReadError
from veer.io import atomic_write, count_pages, read_scan, safe_stem


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def page():
    arr = np.full((40, 30), 250, np.uint8)
    arr[10:12, :] = 20  # a dark line
    return arr


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_mode_becomes_gray_with_ink_dark(page, mode):
    img = Image.fromarray(page).convert(mode) if mode not in ("I;16", "I", "F") else \
        Image.fromarray(page.astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]) * (
            257 if mode == "I;16" else 1))
    fmt = "TIFF" if mode in ("CMYK", "I;16", "I", "F") else "PNG"
    scan = read_scan(encode(img, fmt), name=f"x.{fmt.lower()}")
    assert scan.gray.dtype == np.uint8 and scan.gray.shape == (40, 30)
    assert scan.gray[11].mean() < 100 < scan.gray[30].mean()


def test_bilevel_g4_tiff_and_multipage(page):
    g4 = Image.fromarray(page).convert("1")
    data = encode(g4, "TIFF", compression="group4", dpi=(200, 200))
    scan = read_scan(data)
    assert scan.mode == "1" and scan.dpi == (200.0, 200.0)
    second = Image.fromarray(255 - page).convert("1")
    multi = encode(g4, "TIFF", save_all=True, append_images=[second], compression="group4")
    assert count_pages(multi) == 2
    assert read_scan(multi, page=1).gray[30].mean() < 50
    with pytest.raises(ImageReadError, match="page 3 does not exist"):
        read_scan(multi, page=2, name="two.tif")


@pytest.mark.parametrize("fmt", ["JPEG", "BMP", "GIF"])
def test_common_formats(page, fmt):
    assert read_scan(encode(Image.fromarray(page), fmt)).gray.shape == (40, 30)


def test_wrong_extension_is_read_by_content(tmp_path, page):
    path = tmp_path / "scan.jpg"
    path.write_bytes(encode(Image.fromarray(page), "PNG"))
    assert read_scan(path).format == "PNG"


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"%PDF-1.4 this is not an image", "not an image"),
])
def test_bad_files_give_one_line_errors(data, message):
    with pytest.raises(ImageReadError, match=message) as err:
        read_scan(data, name="upload.png")
    assert str(err.value).startswith("upload.png") and "\n" not in str(err.value)


def test_truncated_file(page):
    data = encode(Image.fromarray(page), "PNG")
    with pytest.raises(ImageReadError, match="upload.png"):
        read_scan(data[: len(data) // 2], name="upload.png")


def test_pixel_limit_and_missing_file(tmp_path, page):
    with pytest.raises(ImageReadError, match="above the limit"):
        read_scan(encode(Image.fromarray(page), "PNG"), max_pixels=100)
    with pytest.raises(ImageReadError, match="no such file"):
        read_scan(tmp_path / "nope.png")


def test_decompression_bomb_header_is_refused_without_decoding():
    # A PNG header declaring 100000 x 100000 pixels, with almost no data behind it.
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    with pytest.raises(ImageReadError, match="bomb|limit"):
        read_scan(data, name="bomb.png")


def test_exif_rotation_is_applied(page):
    img = Image.fromarray(page)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    scan = read_scan(encode(img, "JPEG", exif=exif.tobytes()))
    assert scan.gray.shape == (30, 40)


@pytest.mark.parametrize("name, stem", [
    ("../../etc/passwd", "passwd"), ("C:\\x\\log 1.tif", "log_1"), ("...", "scan"), ("a.b.png", "a.b"),
])
def test_safe_stem_never_makes_a_path(name, stem):
    assert safe_stem(name) == stem


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_atomic_write_makes_ordinary_permissions(tmp_path):
    import os
    import stat
    with atomic_write(tmp_path / "out.txt") as tmp:
        tmp.write_text("ok")
    mode = stat.S_IMODE(os.stat(tmp_path / "out.txt").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
