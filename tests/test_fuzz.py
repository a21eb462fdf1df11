"""Property-based tests: random bytes and arrays never crash the readers with
anything but the documented, user-facing errors."""

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from veer.classes import read_mask, validate_mask
from veer.errors import ImageReadError, MaskError
from veer.io import read_scan

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_read_or_refused_cleanly(data):
    try:
        scan = read_scan(data, name="fuzz.bin", max_pixels=4_000_000)
    except ImageReadError as exc:
        assert str(exc).startswith("fuzz.bin") and "\n" not in str(exc)
    else:
        assert scan.gray.dtype == np.uint8 and scan.gray.ndim == 2


@FUZZ
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"\xff\xd8\xff", b"BM", b"GIF89a"]),
       st.binary(max_size=2048))
def test_corrupt_files_with_real_magic_numbers(magic, tail):
    try:
        read_scan(magic + tail, name="scan.tif", max_pixels=4_000_000)
    except ImageReadError as exc:
        assert "scan.tif" in str(exc)


@FUZZ
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24)))
def test_any_gray_png_round_trips(arr):
    np.testing.assert_array_equal(read_scan(png(arr)).gray, arr)


@FUZZ
@given(hnp.arrays(st.sampled_from([np.uint8, np.int16, np.int64, np.float32, np.bool_]),
                  hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=8)),
       st.booleans())
def test_mask_validator_accepts_only_the_contract(arr, allow_ignore):
    allowed = {0, 1, 2, 255} if allow_ignore else {0, 1, 2}
    try:
        out = validate_mask(arr, allow_ignore=allow_ignore)
    except MaskError as exc:
        assert "\n" not in str(exc)
    else:
        assert out.dtype == np.uint8 and out.ndim == 2
        assert set(np.unique(out).tolist()) <= allowed


@FUZZ
@given(st.binary(max_size=1024))
def test_mask_reader_random_bytes(data):
    try:
        read_mask(data, name="truth.png")
    except MaskError as exc:
        assert str(exc).startswith("truth.png")
