"""The data contract: class ids, colours and mask files."""

import numpy as np
import pytest
from PIL import Image

from veer import classes
from veer.errors import MaskError


def test_class_ids_and_names_follow_the_contract():
    assert (classes.BACKGROUND, classes.CURVE1, classes.CURVE2, classes.IGNORE) == (0, 1, 2, 255)
    assert classes.CLASS_NAMES == ("background", "curve1", "curve2")
    assert len(set(classes.CLASS_COLORS.values())) == 3


def test_colorize_uses_the_class_colours():
    mask = np.array([[0, 1], [2, 255]], np.uint8)
    rgb = classes.colorize(mask)
    assert rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 1]) == classes.hex_to_rgb(classes.CLASS_COLORS[1])
    assert tuple(rgb[1, 0]) == classes.hex_to_rgb(classes.CLASS_COLORS[2])


def test_mask_round_trip(tmp_path):
    mask = np.zeros((7, 9), np.uint8)
    mask[2, 3], mask[4, 5] = 1, 2
    path = classes.write_mask(tmp_path / "a.mask.png", mask)
    with Image.open(path) as img:
        assert img.mode == "L" and img.size == (9, 7)
    np.testing.assert_array_equal(classes.read_mask(path, (7, 9)), mask)
    assert not list(tmp_path.glob("*.part"))


def test_truth_masks_may_hold_ignore_but_predictions_may_not(tmp_path):
    mask = np.full((3, 3), 255, np.uint8)
    classes.validate_mask(mask, allow_ignore=True)
    with pytest.raises(MaskError, match="0, 1 or 2"):
        classes.write_mask(tmp_path / "p.png", mask)


@pytest.mark.parametrize("shape", [(5, 6), (6, 5), (6, 6, 3)])
def test_size_mismatch_is_a_clear_error(shape):
    with pytest.raises(MaskError) as err:
        classes.validate_mask(np.zeros(shape, np.uint8), (6, 6), name="truth.png")
    assert "truth.png" in str(err.value)


def test_values_outside_the_contract_are_named():
    mask = np.array([[0, 3], [7, 1]], np.uint8)
    with pytest.raises(MaskError, match="found 3, 7"):
        classes.validate_mask(mask)


def test_read_mask_rejects_rgb_and_non_images(tmp_path):
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb)
    with pytest.raises(MaskError, match="single-channel"):
        classes.read_mask(rgb)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    with pytest.raises(MaskError, match="not an image"):
        classes.read_mask(junk)
    with pytest.raises(MaskError, match="no such file"):
        classes.read_mask(tmp_path / "missing.png")
