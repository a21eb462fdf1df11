"""The segmenter's networks on the CPU through OpenVINO.

OpenVINO compiles a network for the CPU it runs on (fused convolutions and
GroupNorm, kernels for AVX2, AVX-512 and its bf16 and AMX instructions) and
runs several inference streams side by side. On the project's 2-core Zen 4
machine (AVX-512 BF16), eight 464 x 512 tiles of the joint model, each run
with its mirror view, took a median 49 ms per tile through two streams of
two images each (static shapes), against 85 ms for PyTorch's batched
channels-last bf16 path and 124 ms for the naive way (one tile at a time,
fp32 NCHW), interleaved in one run. In a second run one image per request
took 45 ms, two 49, four 51, and a dynamic batch dimension 62, hence the
design:

* each network is converted once (:func:`ov.convert_model`, a trace on an
  input whose sides are multiples of the stride, so the model's own padding
  branch is never traced) and the result is kept on disk, keyed by the
  weights and versions (:func:`cache_dir`), so a later process reads it in
  a fraction of a second instead of tracing again for seconds;
* it is compiled once per tile shape (1 x 1 x h x w, h and w padded up to
  the stride with white paper, exactly as the model pads) and kept, a few
  shapes per network;
* a batch of images runs as single-image requests on ``streams`` infer
  requests at once; requests are taken from a pool, so concurrent callers
  never share one.

``precision`` "bf16" asks OpenVINO for bf16 inference (used only where the
CPU computes bf16 natively, see :func:`veer.device.resolve_precision`),
"fp32" for f32. The outputs are the networks' logits, as PyTorch's.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import shutil
import tempfile
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from veer.errors import ConfigError

BACKENDS = ("auto", "torch", "openvino")
MAX_SHAPES = 8          # compiled tile shapes kept per network (least recently used dropped): a whole
                        # tile, the last row's and column's, the corner's, and each of them enlarged
_TRACE_SIDE = 64        # the trace's input side: a multiple of every shipped stride


def available() -> bool:
    """Whether OpenVINO can be imported here."""
    try:
        import openvino  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install means "not available"
        return False
    return True


def version() -> str:
    """OpenVINO's release, e.g. '2026.4.1' (without its build suffix)."""
    import openvino

    return str(openvino.__version__).split("-")[0]


def resolve_backend(device, backend: str | None, models: Sequence[Any]) -> str:
    """"torch" or "openvino" for these models on ``device``.

    ``auto`` (or the ``VEER_BACKEND`` environment variable): OpenVINO on the
    CPU when it is installed and every model is a :class:`veer.model.VeerNet`
    (the architecture it is tested on), PyTorch otherwise (CUDA, MPS, other
    networks). Asking for "openvino" where it cannot run is a ConfigError.
    """
    import torch

    from veer.model import VeerNet

    pref = _preference(backend)
    if pref not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    on_cpu = torch.device(device).type == "cpu"
    veernets = all(isinstance(m, VeerNet) for m in models)
    if pref == "auto":
        return "openvino" if on_cpu and veernets and available() else "torch"
    if pref == "openvino":
        if not on_cpu:
            raise ConfigError("--backend openvino runs on the CPU only; use --device cpu or --backend torch")
        if not veernets:
            raise ConfigError("--backend openvino needs VeerNet models")
        if not available():
            raise ConfigError("--backend openvino: OpenVINO is not installed (pip install openvino)")
    return pref


def _preference(backend: str | None) -> str:
    """The backend asked for: the argument, or ``VEER_BACKEND`` where that is "auto"."""
    pref = (backend or "auto").lower()
    if pref == "auto":
        pref = (os.environ.get("VEER_BACKEND") or "auto").lower()
    return pref


def asked_for(backend: str | None) -> bool:
    """Whether OpenVINO was asked for explicitly (argument or ``VEER_BACKEND``), not by "auto"."""
    return _preference(backend) == "openvino"


def cache_dir() -> Path:
    """Where converted networks are kept: ``VEER_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/veer``, else ``~/.cache/veer``."""
    env = os.environ.get("VEER_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "veer"


def model_key(model: Any) -> str:
    """A digest of what the converted network depends on: weights, architecture,
    and the PyTorch and OpenVINO versions."""
    import openvino
    import torch

    h = hashlib.sha256()
    h.update(repr((type(model).__name__, getattr(model, "out_channels", None),
                   getattr(getattr(model, "config", None), "to_dict", lambda: None)(),
                   torch.__version__, openvino.__version__)).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        buf = io.BytesIO()
        np.save(buf, t.detach().cpu().float().numpy(), allow_pickle=False)
        h.update(buf.getvalue())
    return h.hexdigest()[:32]


def convert(model: Any, core: Any, use_cache: bool = True) -> Any:
    """The OpenVINO model of a VeerNet (input ``(N, 1, H, W)``, any size that is
    a multiple of its stride), from the disk cache when it is there."""
    import openvino as ov
    import torch

    path = None
    if use_cache:
        path = cache_dir() / "openvino" / f"{model_key(model)}.xml"
        if path.is_file() and path.with_suffix(".bin").is_file():
            try:
                return core.read_model(str(path))
            except Exception:  # noqa: BLE001 - a damaged cache entry is rebuilt below
                pass
    side = max(_TRACE_SIDE, int(getattr(model, "stride", 16)))
    example = torch.ones((1, 1, side, side), dtype=torch.float32)
    was_training = model.training
    model.eval()
    try:
        # the trace fixes the network's Python branches (its own padding, shape checks) for an
        # input whose sides are multiples of the stride: :meth:`OpenVinoNets.run` pads to that
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)   # OpenVINO traces with torch.jit
            ov_model = ov.convert_model(model, example_input=example, input=[(-1, 1, -1, -1)])
    finally:
        model.train(was_training)
    if path is not None:
        _save(ov_model, path)
    return ov_model


def _save(ov_model: Any, path: Path) -> None:
    """Write the model's .xml/.bin into the cache atomically; a cache that cannot be
    written (read-only home, full disk) only costs the next process a conversion."""
    import openvino as ov

    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=path.parent))
        ov.save_model(ov_model, str(tmp / path.name), compress_to_fp16=False)
        os.replace(tmp / path.with_suffix(".bin").name, path.with_suffix(".bin"))
        os.replace(tmp / path.name, path)
    except OSError:
        pass
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


class _Compiled:
    """One network compiled for one input shape, with a pool of infer requests."""

    def __init__(self, compiled: Any):
        self.compiled = compiled
        self._free: queue.SimpleQueue = queue.SimpleQueue()

    def take(self) -> Any:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return self.compiled.create_infer_request()

    def give(self, request: Any) -> None:
        self._free.put(request)


class OpenVinoNets:
    """Networks compiled by OpenVINO for this CPU; :meth:`run` gives their logits."""

    def __init__(self, models: Sequence[Any], precision: str = "fp32", *, streams: int = 2,
                 threads: int | None = None, use_cache: bool = True):
        import openvino as ov

        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"OpenVINO on the CPU runs fp32 or bf16, not {precision}")
        self.core = ov.Core()
        self.precision = precision
        self.streams = max(1, int(streams))
        self.threads = max(1, int(threads or os.cpu_count() or 1))
        self.strides = [int(getattr(m, "stride", 16)) for m in models]
        self.models = [convert(m, self.core, use_cache) for m in models]
        self.version = version()
        self._compiled: list[OrderedDict] = [OrderedDict() for _ in self.models]
        self._lock = threading.Lock()

    def _config(self) -> dict[str, Any]:
        return {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams,
                "INFERENCE_NUM_THREADS": self.threads,
                "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32"}

    def _for_shape(self, i: int, h: int, w: int) -> _Compiled:
        with self._lock:
            cache = self._compiled[i]
            got = cache.get((h, w))
            if got is not None:
                cache.move_to_end((h, w))
                return got
        model = self.models[i].clone()
        model.reshape({0: (1, 1, h, w)})
        got = _Compiled(self.core.compile_model(model, "CPU", self._config()))
        with self._lock:
            got = cache.setdefault((h, w), got)
            cache.move_to_end((h, w))
            while len(cache) > MAX_SHAPES:
                cache.popitem(last=False)
        return got

    def shapes(self) -> list[tuple[int, int]]:
        """The tile shapes compiled so far (first network), oldest first."""
        with self._lock:
            return list(self._compiled[0]) if self._compiled else []

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """float32 ``(N, 1, H, W)`` in [0, 1] -> each network's float32 logits ``(N, C, H, W)``."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected (N, 1, H, W) input, got {x.shape}")
        n, _, h, w = x.shape
        outs = []
        padded: dict[int, np.ndarray] = {}   # per stride: the networks of a pipeline share one
        for i, stride in enumerate(self.strides):
            xi = padded.get(stride)
            if xi is None:   # white paper, exactly as the network pads inside
                ph, pw = (-h) % stride, (-w) % stride
                xi = padded[stride] = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), constant_values=1.0) \
                    if ph or pw else x
            compiled = self._for_shape(i, xi.shape[2], xi.shape[3])
            out = None
            requests = [compiled.take() for _ in range(min(self.streams, n))]
            try:
                for start in range(0, n, len(requests)):
                    active = requests[:n - start]
                    for k, req in enumerate(active):
                        req.start_async({0: xi[start + k:start + k + 1]})
                    for k, req in enumerate(active):
                        req.wait()
                        y = req.get_output_tensor(0).data
                        if out is None:
                            out = np.empty((n, y.shape[1], h, w), np.float32)
                        out[start + k] = y[0, :, :h, :w]
            finally:
                for req in requests:
                    compiled.give(req)
            outs.append(out)
        return outs
