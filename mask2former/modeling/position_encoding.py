"""Sine positional encoding of 2-D feature maps (DETR / Mask2Former style)."""

import math

import torch
from torch import nn

# Distinct feature-map sizes whose unpadded encoding is kept (one per level and input size).
MAX_CACHED_SIZES = 16


class PositionEmbeddingSine(nn.Module):
    """Fixed sin/cos encoding of (y, x) positions, ``2 * num_pos_feats`` channels.

    With ``normalize`` the cumulative coordinates are rescaled to ``[0, scale]``
    over the valid (unpadded) extent of each map.
    """

    def __init__(
        self,
        num_pos_feats: int = 64,
        temperature: float = 10000,
        normalize: bool = False,
        scale: float | None = None,
    ):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("PositionEmbeddingSine: scale is only used with normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        # Unpadded encodings by (H, W, device): they depend on nothing else.
        self._unpadded: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: [N, C, H, W]; mask: [N, H, W], True on padding. Returns float32 [N, 2F, H, W].
        if mask is not None:
            return self._encode(mask)
        if torch.compiler.is_compiling():  # traced (torch.export): symbolic sizes are no cache keys
            no_padding = x.new_zeros((1, x.size(2), x.size(3)), dtype=torch.bool)
            return self._encode(no_padding).expand(x.size(0), -1, -1, -1)
        key = (x.size(2), x.size(3), x.device)
        encoding = self._unpadded.get(key)
        if encoding is None:
            if len(self._unpadded) >= MAX_CACHED_SIZES:
                self._unpadded.clear()
            no_padding = torch.zeros((1, *key[:2]), device=x.device, dtype=torch.bool)
            encoding = self._unpadded[key] = self._encode(no_padding).contiguous()
        return encoding.expand(x.size(0), -1, -1, -1)

    def _encode(self, mask: torch.Tensor) -> torch.Tensor:
        valid = ~mask
        y_embed = valid.cumsum(1, dtype=torch.float32)  # [N, H, W]
        x_embed = valid.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale

        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)

        pos_x = x_embed[:, :, :, None] / dim_t  # [N, H, W, F]
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)  # [N, 2F, H, W]
