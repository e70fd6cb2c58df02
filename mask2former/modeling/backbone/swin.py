"""Swin Transformer (Liu et al., ICCV 2021) as the detectron2 backbone ``D2SwinTransformer``.

Module, parameter and buffer names follow the official Mask2Former backbone, so its checkpoints (and
MinVIS's) load without key conversion. As there, linear and LayerNorm layers keep PyTorch's default
init; only the relative position bias tables and the absolute position embedding are truncated-normal.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, ShapeSpec
from torch import nn
from torch.utils.checkpoint import checkpoint

# Added to the attention logits of token pairs that the cyclic shift put in one window but
# that are not neighbours in the image (the official value; exp(-100) underflows to 0).
CROSS_REGION_LOGIT = -100.0


class DropPath(nn.Module):
    """Stochastic depth: per sample, zero the branch with probability drop_prob while training."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep_prob = 1.0 - self.drop_prob
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep_prob)
        return x * keep / keep_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``[B, H, W, C]`` -> ``[B * nW, window**2, C]``, windows batch-major, then row-major."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_merge(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B * nW, window**2, C]`` -> ``[B, h, w, C]``."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def relative_position_index(window: int) -> torch.Tensor:
    """``[N, N]`` (N = window**2): the bias-table row of each (query, key) pair's offset (dy, dx)."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack((ys.flatten(), xs.flatten()))  # [2, N]
    offsets = coords[:, :, None] - coords[:, None, :] + (window - 1)  # [2, N, N] in [0, 2w-2]
    return offsets[0] * (2 * window - 1) + offsets[1]


def shifted_window_mask(
    height: int, width: int, window: int, shift: int, device: torch.device | None = None
) -> torch.Tensor:
    """Additive ``[nW, N, N]`` mask of a map rolled up and left by ``shift``: each pixel gets a region
    label from its row band (before the last window / in it but not wrapped / wrapped) and its column
    band; tokens attend to each other (0) only when their labels agree, else ``CROSS_REGION_LOGIT``.
    """
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    row_band = (rows >= height - window).long() + (rows >= height - shift).long()  # [H]
    col_band = (cols >= width - window).long() + (cols >= width - shift).long()  # [W]
    labels = (3 * row_band[:, None] + col_band[None, :]).float()  # [H, W]
    labels = window_partition(labels[None, :, :, None], window).squeeze(-1)  # [nW, N]
    different = labels[:, :, None] != labels[:, None, :]  # [nW, N, N]
    return torch.zeros(different.shape, device=device).masked_fill(different, CROSS_REGION_LOGIT)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside square windows with a learned relative position bias."""

    def __init__(
        self, dim: int, window: int, num_heads: int, qkv_bias: bool = True,
        qk_scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0,
    ):  # fmt: skip
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"WindowAttention: dim {dim} is not divisible by {num_heads} heads")
        self.window = window
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.attn_drop = attn_drop

        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window))

        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: [B * nW, N, C] with N = window**2; mask: [nW, N, N] additive, or None.
        bw, n, c = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).view(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B * nW, heads, N, C / heads]

        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, heads).permute(2, 0, 1)  # [heads, N, N]
        num_windows = 1
        if mask is not None:
            num_windows = mask.shape[0]
            bias = bias[None] + mask[:, None]  # [nW, heads, N, N]
        # Fold the windows of one image into the head axis so that the bias broadcasts over
        # the batch: [B, nW * heads, N, C / heads] and [nW * heads, N, N].
        q, k, v = (t.reshape(bw // num_windows, num_windows * heads, n, -1) for t in (q, k, v))
        bias = bias.reshape(num_windows * heads, n, n).to(q.dtype)
        dropout = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout, scale=self.scale)
        out = out.reshape(bw, heads, n, -1).transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj(out))


class SwinTransformerBlock(nn.Module):
    """Pre-norm transformer block with (shifted) window attention and an MLP."""

    def __init__(
        self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float = 4.0,
        qkv_bias: bool = True, qk_scale: float | None = None, drop: float = 0.0,
        attn_drop: float = 0.0, drop_path: float = 0.0,
    ):  # fmt: skip
        super().__init__()
        if not 0 <= shift < window:
            raise ValueError(f"SwinTransformerBlock: shift {shift} not in [0, {window})")
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: [B, h * w, C]; mask: shifted_window_mask of the padded map (needed if shift > 0).
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        # Zero-pad bottom/right to whole windows (after the norm, as the official does).
        pad_b, pad_r = -h % self.window, -w % self.window
        y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))  # [B, Hp, Wp, C]
        hp, wp = h + pad_b, w + pad_r
        if self.shift > 0:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), mask if self.shift > 0 else None)
        y = window_merge(y, self.window, hp, wp)  # [B, Hp, Wp, C]
        if self.shift > 0:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        y = y[:, :h, :w].reshape(b, h * w, c)

        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Halve the resolution and double the channels: concatenate each 2x2 neighbourhood
    (odd sizes are zero-padded), LayerNorm, then a bias-free linear 4C -> 2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        # x: [B, h * w, C] -> [B, ceil(h / 2) * ceil(w / 2), 2C]
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        # Channel order of the official weights: (0, 0), (1, 0), (0, 1), (1, 1) as (dy, dx).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.flatten(1, 2)))


class BasicLayer(nn.Module):
    """One Swin stage: ``depth`` blocks alternating regular and shifted windows, optionally patch merging."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, qkv_bias: bool,
        qk_scale: float | None, drop: float, attn_drop: float, drop_path: Sequence[float],
        downsample: bool, use_checkpoint: bool,
    ):  # fmt: skip
        super().__init__()
        self.window = window
        self.shift = window // 2
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim, num_heads, window, shift=0 if i % 2 == 0 else self.shift, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop, attn_drop=attn_drop, drop_path=drop_path[i],
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, h * w, C]`` -> the stage's output and the next stage's input (None without downsampling)."""
        mask = None
        if self.shift > 0 and len(self.blocks) > 1:
            hp = -(-h // self.window) * self.window
            wp = -(-w // self.window) * self.window
            mask = shifted_window_mask(hp, wp, self.window, self.shift, x.device)
        for block in self.blocks:
            if self.use_checkpoint:
                x = checkpoint(block, x, h, w, mask, use_reentrant=False)
            else:
                x = block(x, h, w, mask)
        return x, (self.downsample(x, h, w) if self.downsample is not None else None)


class PatchEmbed(nn.Module):
    """Strided-conv patch embedding (optionally LayerNorm-ed); input zero-padded to whole patches."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, patch_norm: bool):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, in_chans, H, W] -> [B, embed_dim, ceil(H / p), ceil(W / p)]
        p = self.patch_size
        x = F.pad(x, (0, -x.shape[3] % p, 0, -x.shape[2] % p))
        x = self.proj(x)
        if self.norm is not None:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x


class SwinTransformer(nn.Module):
    """Hierarchical Swin backbone; :meth:`forward` returns every stage's normalized feature map
    as ``res2``, ``res3``, ... (strides ``patch_size * 2**i``, channels ``embed_dim * 2**i``)."""

    def __init__(
        self, pretrain_img_size: int = 224, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7, mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: float | None = None,
        drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.2,
        ape: bool = False, patch_norm: bool = True, use_checkpoint: bool = False,
    ):  # fmt: skip
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"SwinTransformer: {len(depths)} depths but {len(num_heads)} heads")
        self.num_features = [embed_dim * 2**i for i in range(len(depths))]
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm)

        # Learned at the pre-training resolution, resized bicubically to the input's grid.
        self.absolute_pos_embed: nn.Parameter | None = None
        if ape:
            grid = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, grid, grid))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(drop_rate)

        # Stochastic depth grows linearly from 0 to drop_path_rate over all blocks.
        drop_path = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.layers = nn.ModuleList(
            BasicLayer(
                dim=self.num_features[i], depth=depths[i], num_heads=num_heads[i], window=window_size,
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate,
                attn_drop=attn_drop_rate, drop_path=drop_path[starts[i] : starts[i] + depths[i]],
                downsample=i < len(depths) - 1, use_checkpoint=use_checkpoint,
            )
            for i in range(len(depths))
        )
        for i, channels in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(channels))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # x: [B, in_chans, H, W] -> {"res{i+2}": [B, embed_dim * 2**i, h_i, w_i]}
        x = self.patch_embed(x)  # [B, C, h, w]
        h, w = x.shape[2], x.shape[3]
        if self.absolute_pos_embed is not None:
            x = x + F.interpolate(self.absolute_pos_embed, size=(h, w), mode="bicubic")
        tokens = self.pos_drop(x.flatten(2).transpose(1, 2))  # [B, h * w, C]

        outputs = {}
        for i, layer in enumerate(self.layers):
            out, next_tokens = layer(tokens, h, w)
            out = getattr(self, f"norm{i}")(out)  # [B, h * w, C_i]
            out = out.view(-1, h, w, self.num_features[i]).permute(0, 3, 1, 2)
            outputs[f"res{i + 2}"] = out.contiguous()
            if next_tokens is not None:
                tokens, h, w = next_tokens, (h + 1) // 2, (w + 1) // 2
        return outputs


@BACKBONE_REGISTRY.register()
class D2SwinTransformer(SwinTransformer, Backbone):
    """:class:`SwinTransformer` built from ``cfg.MODEL.SWIN``. Inputs are expected already
    normalized (the meta-architecture does it); any H, W work, padding is internal."""

    def __init__(self, cfg: CfgNode, input_shape: ShapeSpec):
        swin = cfg.MODEL.SWIN
        super().__init__(
            pretrain_img_size=swin.PRETRAIN_IMG_SIZE, patch_size=swin.PATCH_SIZE,
            in_chans=input_shape.channels, embed_dim=swin.EMBED_DIM, depths=swin.DEPTHS,
            num_heads=swin.NUM_HEADS, window_size=swin.WINDOW_SIZE, mlp_ratio=swin.MLP_RATIO,
            qkv_bias=swin.QKV_BIAS, qk_scale=swin.QK_SCALE, drop_rate=swin.DROP_RATE,
            attn_drop_rate=swin.ATTN_DROP_RATE, drop_path_rate=swin.DROP_PATH_RATE, ape=swin.APE,
            patch_norm=swin.PATCH_NORM, use_checkpoint=swin.USE_CHECKPOINT,
        )  # fmt: skip
        names = [f"res{i + 2}" for i in range(len(self.num_features))]
        unknown = set(swin.OUT_FEATURES) - set(names)
        if unknown:
            raise ValueError(f"MODEL.SWIN.OUT_FEATURES: unknown {sorted(unknown)}, have {names}")
        self._out_features = list(swin.OUT_FEATURES)
        self._out_feature_strides = {name: swin.PATCH_SIZE * 2**i for i, name in enumerate(names)}
        self._out_feature_channels = dict(zip(names, self.num_features, strict=True))
        self._size_divisibility = self._out_feature_strides[names[-1]]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # x: [N, 3, H, W] -> {name: [N, C_name, ceil(H / stride), ceil(W / stride)]}
        if x.dim() != 4:
            raise ValueError(f"D2SwinTransformer takes [N, C, H, W] input, got {tuple(x.shape)}")
        features = super().forward(x)
        return {name: features[name] for name in self._out_features}

    def output_shape(self) -> dict[str, ShapeSpec]:
        channels, strides = self._out_feature_channels, self._out_feature_strides
        return {name: ShapeSpec(channels=channels[name], stride=strides[name]) for name in self._out_features}

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility
