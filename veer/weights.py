"""Shipped model weights: saving, checking and loading them safely.

Each model ``<name>`` in ``assets/models`` is three files:

    <name>.pt            the state_dict only (``torch.load(weights_only=True)``:
                         no pickled code is ever executed)
    <name>.json          the model card: name, task, target, config, parameters,
                         GMAC per megapixel, sha256 of the .pt, training facts
                         and final validation scores
    <name>.history.json  the training history, one row per evaluation

:func:`load_model` checks the .pt against the card's sha256 before loading,
and every failure (missing, damaged, mismatched) is a :class:`ModelFileError`
that names the file and says how to get it back.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from veer.errors import ModelFileError
from veer.io import atomic_write
from veer.model import VeerNet, build_model, count_parameters, gmac_per_megapixel

MODELS_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"
PIPELINES: dict[str, list[str]] = {
    "joint": ["joint"],
    "separate": ["binary_background", "binary_curve1", "binary_curve2"],
}
MODEL_NAMES = tuple(n for names in PIPELINES.values() for n in names)


def retrain_command(name: str) -> str:
    """The command that trains (and exports) model ``name``."""
    if name == "joint":
        return "python -m veer train --task joint"
    if name.startswith("binary_"):
        return f"python -m veer train --task binary --target {name[len('binary_'):]}"
    return "python -m veer train"


def _restore_hint(name: str, filename: str, models_dir: Path) -> str:
    hint = f"restore it with 'git checkout -- assets/models/{filename}'"
    if Path(models_dir).resolve() != MODELS_DIR.resolve():
        hint = f"restore {Path(models_dir) / filename}"
    return f"{hint} or retrain with '{retrain_command(name)}'"


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, so the JSON is strict."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _readable(path: Path) -> None:
    """Files to ship are world-readable (the temporary file of atomic_write is 0600)."""
    try:
        os.chmod(path, 0o644)
    except OSError:
        pass


def write_json(path: Path | str, data: Any) -> Path:
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")
        _readable(tmp)
    return path


def save_model(model: VeerNet, name: str, card: dict[str, Any] | None = None,
               models_dir: Path | str | None = None) -> dict[str, Any]:
    """Write ``<name>.pt`` (state_dict) and ``<name>.json`` (card); return the card.

    The card given is completed with name, config, out_channels, parameters,
    gmac_per_mpx (if absent), the .pt file name and its sha256. Both files are
    written atomically, the weights first, so a reader never sees a card that
    points at a half-written file.
    """
    models_dir = Path(models_dir) if models_dir is not None else MODELS_DIR
    card = dict(card or {})
    card["name"] = name
    card.setdefault("task", "joint" if model.out_channels == 3 else "binary")
    card.setdefault("target", None)
    card["config"] = model.config.to_dict()
    card["out_channels"] = model.out_channels
    card["parameters"] = count_parameters(model)
    if card.get("gmac_per_mpx") is None:
        card["gmac_per_mpx"] = round(gmac_per_megapixel(model), 3)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    pt = models_dir / f"{name}.pt"
    with atomic_write(pt) as tmp:
        tmp.write_bytes(data)
        _readable(tmp)
    card["file"] = pt.name
    card["sha256"] = hashlib.sha256(data).hexdigest()
    write_json(models_dir / f"{name}.json", card)
    return card


def save_history(name: str, rows: list[dict[str, Any]], models_dir: Path | str | None = None) -> Path:
    """Write ``<name>.history.json`` (a list of rows, one per evaluation)."""
    models_dir = Path(models_dir) if models_dir is not None else MODELS_DIR
    return write_json(models_dir / f"{name}.history.json", list(rows))


def load_history(name: str, models_dir: Path | str | None = None) -> list[dict[str, Any]]:
    """The training history of model ``name`` ([] if it has none)."""
    models_dir = Path(models_dir) if models_dir is not None else MODELS_DIR
    path = models_dir / f"{name}.history.json"
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: the training history is damaged ({exc}); "
                             f"{_restore_hint(name, path.name, models_dir)}") from None
    return rows if isinstance(rows, list) else []


def load_card(name: str, models_dir: Path | str | None = None) -> dict[str, Any]:
    """The model card of ``name``; ModelFileError if missing or damaged."""
    models_dir = Path(models_dir) if models_dir is not None else MODELS_DIR
    path = models_dir / f"{name}.json"
    if not path.exists():
        raise ModelFileError(f"{path}: model card not found; {_restore_hint(name, path.name, models_dir)}")
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: the model card is damaged ({exc}); "
                             f"{_restore_hint(name, path.name, models_dir)}") from None
    if not isinstance(card, dict) or "config" not in card or "sha256" not in card:
        raise ModelFileError(f"{path}: not a veer model card (no config or sha256); "
                             f"{_restore_hint(name, path.name, models_dir)}")
    return card


def load_model(name: str, models_dir: Path | str | None = None,
               device: str | torch.device = "cpu") -> tuple[VeerNet, dict[str, Any]]:
    """Rebuild model ``name`` from its card and verified weights; eval mode, on ``device``."""
    models_dir = Path(models_dir) if models_dir is not None else MODELS_DIR
    card = load_card(name, models_dir)
    pt = models_dir / card.get("file", f"{name}.pt")
    hint = _restore_hint(name, pt.name, models_dir)
    if not pt.exists():
        raise ModelFileError(f"{pt}: weight file not found; {hint}")
    try:
        data = pt.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{pt}: cannot be read ({exc.strerror or exc}); {hint}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != card["sha256"]:
        raise ModelFileError(f"{pt}: checksum does not match its model card {name}.json "
                             f"(the file is damaged or from another model); {hint}")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ModelFileError(f"{pt}: not a loadable weight file ({type(exc).__name__}); {hint}") from None
    try:
        model = build_model(card["config"], int(card.get("out_channels", 3)))
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - config/weights disagree
        raise ModelFileError(f"{pt}: the weights do not fit the model in {name}.json ({exc}); {hint}") from None
    model.eval().to(device)
    return model, card
