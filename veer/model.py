"""VeerNet: a small U-Net with a transformer bottleneck for well-log scans.

Layout (``levels`` = 4, widths ``(c0, c1, c2, c3, c4)``)::

    full res   stem 3x3 1->c0 ............................ fuse 3x3 c0->c0 -> refine -> head 1x1
    1/2        down 3x3/2 c0->c1, blocks ......... up + skip, 3x3
    1/4        down 3x3/2 c1->c2, blocks ..... up + skip, 3x3
    1/8        down 3x3/2 c2->c3, blocks . up + skip, 3x3
    1/16       down 3x3/2 c3->c4, blocks, transformer (global self-attention)

The full-resolution path is kept deliberately thin (``c0`` channels, two 3x3
convolutions and the ``head_blocks``) because on a CPU it dominates the cost,
yet it must exist: the curves are only 1-6 px wide and a decoder that stops
at half resolution blurs them. The self-attention at the bottleneck lets every location see the whole
tile: the rhythm of a dashed trace and the full width of a track.

Decoder steps add the upsampled coarse features (projected 1x1 at the coarse
resolution, which is cheaper) to the skip features and mix them with one 3x3
convolution. All convolutions are followed by GroupNorm and an activation.
``head_blocks`` residual 3x3 blocks at full resolution ("refine", none by
default; the shipped networks have two) each add 0.58 GMAC per megapixel at
``c0`` = 8, about 7 % of the default network's work.

:func:`grow_state` carries a trained network's weights into a bigger one
(more residual blocks, transformer layers or refine blocks, or more channels
below the bottleneck): every new block starts as the identity and every new
channel feeds nothing the old ones compute, so the grown network computes
exactly what the trained one did, and training goes on from there
(``train --init``).

The network takes float32 ``(N, 1, H, W)`` = gray / 255 (1.0 = white paper) of
any height and width: it pads to a multiple of its stride with white and crops
the logits back. Output: ``(N, C, H, W)`` logits, C = 3 (joint) or 1 (binary).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from veer.errors import ConfigError


@dataclass
class ModelConfig:
    """Width and depth of a VeerNet. Everything a saved model needs to be rebuilt."""

    widths: tuple[int, ...] = (8, 16, 32, 64, 128)  # channels at full res, 1/2, 1/4, ...
    blocks: tuple[int, ...] = (0, 1, 2, 2)           # residual 3x3 blocks after each downsampling
    attn_layers: int = 1                            # transformer blocks at the bottleneck
    attn_heads: int = 4
    mlp_ratio: float = 2.0
    groups: int = 4                                 # GroupNorm groups (fewer where channels are few)
    activation: str = "leaky_relu"                  # leaky_relu | relu | silu | gelu
    head_blocks: int = 0                            # residual 3x3 blocks at full res before the head

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        self.blocks = tuple(int(b) for b in self.blocks)
        if len(self.widths) < 2:
            raise ConfigError("model widths need at least two levels (full res and one lower)")
        if len(self.blocks) != len(self.widths) - 1:
            raise ConfigError(f"model blocks must have one entry per lower level "
                              f"({len(self.widths) - 1}), got {len(self.blocks)}")
        self.head_blocks = int(self.head_blocks)
        if any(w < 1 for w in self.widths) or any(b < 0 for b in self.blocks) or self.head_blocks < 0:
            raise ConfigError("model widths must be positive and blocks and head_blocks non-negative")
        if self.attn_layers and self.widths[-1] % self.attn_heads:
            raise ConfigError(f"bottleneck width {self.widths[-1]} must be divisible by "
                              f"attn_heads {self.attn_heads}")
        if self.activation not in _ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose {', '.join(_ACTIVATIONS)}")

    @property
    def levels(self) -> int:
        return len(self.widths) - 1

    @property
    def stride(self) -> int:
        return 2 ** self.levels

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["blocks"] = list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | "ModelConfig" | None) -> "ModelConfig":
        if data is None:
            return cls()
        if isinstance(data, ModelConfig):
            return data
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config key(s): {', '.join(unknown)}")
        return cls(**dict(data))


def _leaky_relu() -> nn.Module:
    # as cheap as ReLU on a CPU, but a unit can never die: with only 8 channels at
    # full resolution, a dead ReLU channel costs the head an eighth of its input
    return nn.LeakyReLU(0.1, inplace=True)


_ACTIVATIONS = {"leaky_relu": _leaky_relu, "relu": lambda: nn.ReLU(inplace=True),
                "silu": lambda: nn.SiLU(inplace=True), "gelu": nn.GELU}


def _num_groups(channels: int, groups: int) -> int:
    """GroupNorm groups for ``channels``: at most ``groups``, at least 4 channels each where
    there are that many, and a divisor of ``channels``."""
    g = max(1, min(groups, channels // 4 or 1))
    while channels % g:
        g -= 1
    return g


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(_num_groups(channels, groups), channels)


class ConvNormAct(nn.Sequential):
    """3x3 (or kxk) convolution, GroupNorm, activation."""

    def __init__(self, cin: int, cout: int, cfg: ModelConfig, *, stride: int = 1, kernel: int = 3):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            _norm(cout, cfg.groups),
            _ACTIVATIONS[cfg.activation](),
        )


class ResBlock(nn.Module):
    """x + ConvNormAct(x): one 3x3 convolution with a residual connection."""

    def __init__(self, channels: int, cfg: ModelConfig):
        super().__init__()
        self.body = ConvNormAct(channels, channels, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TransformerBlock(nn.Module):
    """Pre-norm transformer layer over all bottleneck positions of a tile.

    A depthwise 3x3 convolution in front gives the tokens their position (it
    works for any grid size, unlike a fixed positional table).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(round(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos(x)
        n, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)                      # (N, HW, C)
        q, k, v = self.qkv(self.norm1(t)).reshape(n, h * w, 3, self.heads, c // self.heads) \
            .permute(2, 0, 3, 1, 4).unbind(0)                 # each (N, heads, HW, C/heads)
        a = F.scaled_dot_product_attention(q, k, v)
        t = t + self.proj(a.transpose(1, 2).reshape(n, h * w, c))
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(n, c, h, w)


class VeerNet(nn.Module):
    """The segmentation network; build it with :func:`build_model`."""

    def __init__(self, config: ModelConfig | Mapping[str, Any] | None = None, out_channels: int = 3):
        super().__init__()
        cfg = ModelConfig.from_dict(config)
        if out_channels not in (1, 3):
            raise ConfigError(f"out_channels must be 3 (joint) or 1 (binary), got {out_channels}")
        self.config = cfg
        self.out_channels = out_channels
        w = cfg.widths
        self.stem = ConvNormAct(1, w[0], cfg)
        self.down = nn.ModuleList()
        for i in range(1, len(w)):
            layers: list[nn.Module] = [ConvNormAct(w[i - 1], w[i], cfg, stride=2)]
            layers += [ResBlock(w[i], cfg) for _ in range(cfg.blocks[i - 1])]
            self.down.append(nn.Sequential(*layers))
        self.attn = nn.Sequential(*[TransformerBlock(w[-1], cfg.attn_heads, cfg.mlp_ratio)
                                    for _ in range(cfg.attn_layers)])
        # decoder: level i (coarse) -> level i-1 (fine)
        self.lateral = nn.ModuleList([nn.Conv2d(w[i], w[i - 1], 1) for i in range(len(w) - 1, 0, -1)])
        self.mix = nn.ModuleList([ConvNormAct(w[i - 1], w[i - 1], cfg) for i in range(len(w) - 1, 0, -1)])
        self.refine = nn.Sequential(*[ResBlock(w[0], cfg) for _ in range(cfg.head_blocks)])
        self.head = nn.Conv2d(w[0], out_channels, 1)

    @property
    def stride(self) -> int:
        return self.config.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"VeerNet takes (N, 1, H, W) input, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        s = self.stride
        ph, pw = (-h) % s, (-w) % s
        x = 1.0 - x  # ink -> high values, white paper (and the padding) -> 0
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        x = (x - 0.25) * 2.0
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = self.attn(skips.pop())
        for lateral, mix in zip(self.lateral, self.mix):
            skip = skips.pop()
            y = F.interpolate(lateral(y), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = mix(y + skip)
        y = self.head(self.refine(y))
        return y[..., :h, :w]


def build_model(config: ModelConfig | Mapping[str, Any] | None = None, out_channels: int = 3) -> VeerNet:
    """A freshly initialised VeerNet (3 logits: joint; 1 logit: binary mask)."""
    return VeerNet(config, out_channels)


def _group_size(channels: int, groups: int) -> int:
    return channels // _num_groups(channels, groups)


def grows_from(small: ModelConfig | Mapping[str, Any], big: ModelConfig | Mapping[str, Any]) -> bool:
    """Whether a network of config ``big`` holds one of config ``small`` plus new parts only.

    Heads, norm and activation must agree; ``big`` may have more residual
    blocks per level, transformer layers and refine blocks, and more channels
    at any level but the bottleneck (whose width the transformer's layer norms
    span) as long as every GroupNorm keeps its group size, so that the old
    channels' groups stay whole and the new channels form groups of their own.
    ``big`` may allow more groups for that: 16 channels in 4 groups of 4 grow
    into 24 in 6 groups of 4 (``groups`` 6), and the other levels keep their
    group sizes too when every one of them grows by the same factor.
    """
    a, b = ModelConfig.from_dict(small), ModelConfig.from_dict(big)
    same = ("attn_heads", "mlp_ratio", "activation")
    widths_ok = (len(a.widths) == len(b.widths) and a.widths[-1] == b.widths[-1]
                 and all(x <= y and _group_size(x, a.groups) == _group_size(y, b.groups)
                         for x, y in zip(a.widths, b.widths)))
    return (widths_ok and all(getattr(a, k) == getattr(b, k) for k in same)
            and all(x <= y for x, y in zip(a.blocks, b.blocks))
            and a.attn_layers <= b.attn_layers and a.head_blocks <= b.head_blocks)


def _start_as_identity(module: nn.Module) -> None:
    """Zero the last layer of a new residual branch so that the block passes its input on."""
    if isinstance(module, ResBlock):
        norm = module.body[1]
        nn.init.zeros_(norm.weight)
        nn.init.zeros_(norm.bias)
    elif isinstance(module, TransformerBlock):
        for layer in (module.pos, module.proj, module.mlp[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)


def _widen(own: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``own`` (a fresh, wider tensor) with ``old`` in its leading slice.

    For a weight whose inputs grew (dimension 1 of a convolution or linear
    layer) the new inputs' weights into the old outputs are zeroed: the old
    channels then compute exactly what they did, whatever the new channels
    hold, while the new channels' own weights keep their random start.
    """
    if own.dim() != old.dim() or any(o < n for o, n in zip(own.shape, old.shape)):
        raise ConfigError(f"a weight of shape {tuple(old.shape)} cannot grow into {tuple(own.shape)}")
    out = own.clone()
    out[tuple(slice(0, n) for n in old.shape)] = old
    if own.dim() >= 2 and own.shape[1] > old.shape[1]:
        out[:old.shape[0], old.shape[1]:] = 0
    return out


def grow_state(model: VeerNet, state: Mapping[str, torch.Tensor], small: ModelConfig | Mapping[str, Any]) -> list[str]:
    """Load the weights of a trained network of config ``small`` into the bigger ``model``.

    Every block that ``small`` lacks starts as the identity (its residual
    branch's last layer zeroed; the rest keeps its random initialisation so
    that training can move it), and every new channel of a wider level feeds
    nothing the old channels compute (see :func:`_widen`), so ``model`` then
    computes what the trained network did. Returns the names of the new
    blocks, then the widened tensors. Raises :class:`ConfigError` when
    ``model`` does not grow from ``small``.
    """
    small_cfg = ModelConfig.from_dict(small)
    if not grows_from(small_cfg, model.config):
        raise ConfigError("the network cannot grow from these weights: heads, norm, activation and the "
                          "bottleneck width must be the same, other widths may grow only by whole "
                          "GroupNorm groups, and blocks, attention layers and refine blocks no fewer")
    new: list[str] = []
    for i, (a, b) in enumerate(zip(small_cfg.blocks, model.config.blocks)):
        new += [f"down.{i}.{j + 1}" for j in range(a, b)]      # index 0 is the strided convolution
    new += [f"attn.{j}" for j in range(small_cfg.attn_layers, model.config.attn_layers)]
    new += [f"refine.{j}" for j in range(small_cfg.head_blocks, model.config.head_blocks)]
    for name in new:
        _start_as_identity(model.get_submodule(name))
    own = model.state_dict()
    fresh = {k for k in own if any(k.startswith(n + ".") for n in new)}
    missing = set(own) - fresh - set(state)
    unexpected = set(state) - set(own)
    if missing or unexpected:
        raise ConfigError(f"the weights do not match their config (missing {sorted(missing)[:3]}, "
                          f"unexpected {sorted(unexpected)[:3]})")
    loaded = {k: own[k] for k in fresh}
    widened = []
    for k, v in state.items():
        if tuple(v.shape) == tuple(own[k].shape):
            loaded[k] = v
        else:
            loaded[k] = _widen(own[k], v)
            widened.append(k)
    model.load_state_dict(loaded)
    return new + widened


def to_input(gray: np.ndarray) -> torch.Tensor:
    """uint8 gray (H, W) or (N, H, W) -> float32 (N, 1, H, W) in [0, 1]."""
    arr = np.asarray(gray)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected a gray image (H, W) or a stack (N, H, W), got shape {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.uint8)).to(torch.float32)
    return t.div_(255.0).unsqueeze(1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def gmac_per_megapixel(model: nn.Module, tile: int = 512) -> float:
    """Multiply-accumulates per megapixel (in billions) on ``tile`` x ``tile`` input.

    Counted with ``torch.utils.flop_counter`` (convolutions, linear layers and
    attention matrix products; FLOPs / 2 = MACs). Norms and activations are
    not counted. The attention share grows with the tile, hence the fixed tile.
    """
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    # count on the meta device: shapes only, no arithmetic, so it is instant
    ghost = copy.deepcopy(model).to("meta").eval()
    x = torch.ones(1, 1, tile, tile, device="meta", dtype=torch.float32)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        ghost(x)
    macs = counter.get_total_flops() / 2
    return float(macs / (tile * tile) * 1e6 / 1e9)


def describe(model: VeerNet) -> dict[str, Any]:
    """Parameters, GMAC/Mpx and config, as the model card reports them."""
    return {
        "config": model.config.to_dict(),
        "out_channels": model.out_channels,
        "parameters": count_parameters(model),
        "gmac_per_mpx": round(gmac_per_megapixel(model), 3),
    }
