"""Mask2Former's pixel decoder: a deformable-attention encoder over the coarse backbone
levels followed by an FPN-style top-down path to the finer levels.
"""

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from fvcore.nn import weight_init
from torch import nn

from ..position_encoding import PositionEmbeddingSine
from .ms_deform_attn import MSDeformAttn
from .registry import PIXEL_DECODER_REGISTRY

# Number of encoder output levels handed to the transformer decoder (official: always 3).
NUM_MULTI_SCALE_FEATURES = 3


class MSDeformAttnTransformerEncoderLayer(nn.Module):
    """Post-norm layer: deformable self-attention, then a ReLU feed-forward network."""

    def __init__(
        self, d_model: int = 256, d_ffn: int = 1024, dropout: float = 0.1, n_levels: int = 4,
        n_heads: int = 8, n_points: int = 4,
    ):  # fmt: skip
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self, src: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
        spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        # src, pos: [N, S, C]; reference_points: [N, S, L, 2]
        shapes, starts = spatial_shapes, level_start_index
        attended = self.self_attn(src + pos, reference_points, src, shapes, starts, padding_mask)
        src = self.norm1(src + self.dropout1(attended))
        hidden = self.linear1(src)  # [N, S, d_ffn]
        # In place only without autograd: on this view of the matmul output it would cost a
        # full copy of the activations in the backward pass.
        hidden = self.dropout2(F.relu(hidden, inplace=not hidden.requires_grad))
        return self.norm2(src + self.dropout3(self.linear2(hidden)))


class MSDeformAttnTransformerEncoder(nn.Module):
    """A stack of identical encoder layers; every position queries from its own pixel centre."""

    def __init__(self, encoder_layer: MSDeformAttnTransformerEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(encoder_layer) for _ in range(num_layers))
        self.num_layers = num_layers

    @staticmethod
    def get_reference_points(
        spatial_shapes: list[tuple[int, int]], valid_ratios: torch.Tensor, device: torch.device
    ) -> torch.Tensor:
        """Pixel centres of every level, normalised by that level's valid (unpadded) extent, then
        mapped onto every level's valid extent. valid_ratios: [N, L, 2] (w, h) -> [N, S, L, 2] (x, y)."""
        per_level = []
        for level, (height, width) in enumerate(spatial_shapes):
            centre_y = torch.arange(height, dtype=torch.float32, device=device) + 0.5
            centre_x = torch.arange(width, dtype=torch.float32, device=device) + 0.5
            grid_y, grid_x = torch.meshgrid(centre_y, centre_x, indexing="ij")  # [H, W]
            ref_y = grid_y.reshape(1, -1) / (valid_ratios[:, None, level, 1] * height)  # [N, H*W]
            ref_x = grid_x.reshape(1, -1) / (valid_ratios[:, None, level, 0] * width)
            per_level.append(torch.stack((ref_x, ref_y), -1))  # [N, H*W, 2]
        reference_points = torch.cat(per_level, 1)  # [N, S, 2]
        return reference_points[:, :, None] * valid_ratios[:, None]  # [N, S, L, 2]

    def forward(
        self, src: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
        valid_ratios: torch.Tensor, pos: torch.Tensor, padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        shapes = [(h, w) for h, w in spatial_shapes.tolist()]
        reference_points = self.get_reference_points(shapes, valid_ratios, src.device)
        output = src
        for layer in self.layers:
            output = layer(output, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return output


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    """Flattens the levels, adds a learned per-level embedding to the positional encoding
    and runs the deformable encoder.
    """

    def __init__(
        self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6, dim_feedforward: int = 1024,
        dropout: float = 0.1, num_feature_levels: int = 4, enc_n_points: int = 4,
    ):  # fmt: skip
        super().__init__()
        self.d_model = d_model
        self.nhead = nhead
        layer = MSDeformAttnTransformerEncoderLayer(
            d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points
        )
        self.encoder = MSDeformAttnTransformerEncoder(layer, num_encoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for param in self.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module.reset_parameters()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def get_valid_ratio(mask: torch.Tensor) -> torch.Tensor:
        """mask: [N, H, W], True on padding. Returns [N, 2], the (w, h) valid fractions."""
        _, height, width = mask.shape
        valid_h = (~mask[:, :, 0]).sum(1)
        valid_w = (~mask[:, 0, :]).sum(1)
        return torch.stack([valid_w.float() / width, valid_h.float() / height], -1)

    def forward(
        self, srcs: list[torch.Tensor], pos_embeds: list[torch.Tensor],
        masks: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """srcs, pos_embeds: per level [N, C, H_l, W_l]; masks: per level [N, H_l, W_l], True on padding
        (None: nothing padded). Returns memory [N, S, C], spatial_shapes [L, 2], level_start_index [L]."""
        # [N, C, H, W] -> [N, H*W, C]: a view for channels-last maps.
        src_flatten = torch.cat([src.permute(0, 2, 3, 1).flatten(1, 2) for src in srcs], 1)  # [N, S, C]
        pos_flatten = torch.cat(
            [pos.permute(0, 2, 3, 1).flatten(1, 2) + self.level_embed[level].view(1, 1, -1)
             for level, pos in enumerate(pos_embeds)], 1,
        )  # [N, S, C]
        device = src_flatten.device
        # [L, 2] (H_l, W_l), size by size: torch.export keeps them symbolic (as_tensor would bake them in)
        sizes = [torch.scalar_tensor(size, dtype=torch.long) for src in srcs for size in src.shape[-2:]]
        spatial_shapes = torch.stack(sizes).view(len(srcs), 2).to(device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        if masks is None:  # nothing padded: no mask to apply, every level fully valid
            mask_flatten = None
            valid_ratios = torch.ones((src_flatten.shape[0], len(srcs), 2), device=device)  # [N, L, 2]
        else:
            mask_flatten = torch.cat([mask.flatten(1) for mask in masks], 1)  # [N, S]
            valid_ratios = torch.stack([self.get_valid_ratio(mask) for mask in masks], 1)  # [N, L, 2]
        memory = self.encoder(
            src_flatten, spatial_shapes, level_start_index, valid_ratios, pos_flatten, mask_flatten
        )
        return memory, spatial_shapes, level_start_index


@PIXEL_DECODER_REGISTRY.register()
class MSDeformAttnPixelDecoder(nn.Module):
    """Deformable encoder over the ``transformer_in_features`` levels (coarse to fine), then
    lateral + 3x3 output convs that bring the finest encoder level down to ``common_stride``.
    """

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        transformer_dropout: float,
        transformer_nheads: int,
        transformer_dim_feedforward: int,
        transformer_enc_layers: int,
        transformer_enc_n_points: int = 4,
        conv_dim: int,
        mask_dim: int,
        norm: str | Callable[[int], nn.Module] | None = None,  # of the FPN convs (detectron2 get_norm)
        transformer_in_features: list[str],
        common_stride: int,
    ):
        super().__init__()
        by_stride = sorted(input_shape.items(), key=lambda item: item[1].stride)  # fine -> coarse
        self.in_features = [name for name, _ in by_stride]
        self.feature_strides = [spec.stride for _, spec in by_stride]
        self.feature_channels = [spec.channels for _, spec in by_stride]

        encoder_shapes = [item for item in by_stride if item[0] in transformer_in_features]
        self.transformer_in_features = [name for name, _ in encoder_shapes]  # fine -> coarse
        self.transformer_feature_strides = [spec.stride for _, spec in encoder_shapes]
        self.transformer_num_feature_levels = len(encoder_shapes)

        # One 1x1 conv + GroupNorm per encoder level, coarsest first.
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(spec.channels, conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
            for _, spec in reversed(encoder_shapes)
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)

        self.transformer = MSDeformAttnTransformerEncoderOnly(
            d_model=conv_dim,
            nhead=transformer_nheads,
            num_encoder_layers=transformer_enc_layers,
            dim_feedforward=transformer_dim_feedforward,
            dropout=transformer_dropout,
            num_feature_levels=self.transformer_num_feature_levels,
            enc_n_points=transformer_enc_n_points,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1)
        weight_init.c2_xavier_fill(self.mask_features)

        self.maskformer_num_feature_levels = NUM_MULTI_SCALE_FEATURES
        self.common_stride = common_stride
        # Levels finer than the encoder's finest one, down to common_stride.
        self.num_fpn_levels = int(math.log2(min(self.transformer_feature_strides)) - math.log2(common_stride))
        use_bias = norm == ""
        lateral_convs: list[Conv2d] = []
        output_convs: list[Conv2d] = []
        for idx, in_channels in enumerate(self.feature_channels[: self.num_fpn_levels]):
            lateral_conv = Conv2d(
                in_channels, conv_dim, kernel_size=1, bias=use_bias, norm=get_norm(norm, conv_dim)
            )
            output_conv = Conv2d(
                conv_dim, conv_dim, kernel_size=3, padding=1, bias=use_bias, norm=get_norm(norm, conv_dim),
                activation=F.relu,
            )
            weight_init.c2_xavier_fill(lateral_conv)
            weight_init.c2_xavier_fill(output_conv)
            # Official checkpoint names: adapter_1 / layer_1 belong to the finest level.
            self.add_module(f"adapter_{idx + 1}", lateral_conv)
            self.add_module(f"layer_{idx + 1}", output_conv)
            lateral_convs.append(lateral_conv)
            output_convs.append(output_conv)
        # Plain lists (already registered above), in top-down order: coarse -> fine.
        self.lateral_convs = lateral_convs[::-1]
        self.output_convs = output_convs[::-1]

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
            "transformer_dropout": cfg.MODEL.MASK_FORMER.DROPOUT,
            # As in the official code, the encoder shares the decoder's head count.
            "transformer_nheads": cfg.MODEL.MASK_FORMER.NHEADS,
            # Not MODEL.MASK_FORMER.DIM_FEEDFORWARD, which belongs to the transformer decoder.
            "transformer_dim_feedforward": head.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD,
            "transformer_enc_layers": head.TRANSFORMER_ENC_LAYERS,
            "transformer_enc_n_points": head.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS,
            "transformer_in_features": head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES,
            "common_stride": head.COMMON_STRIDE,
        }

    def forward_features(
        self, features: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Backbone maps by name -> mask_features [N, mask_dim, H/common_stride, W/common_stride], the
        coarsest encoder output and the first 3 levels of (encoder outputs coarse -> fine, FPN levels)."""
        srcs = []
        pos = []
        for proj, name in zip(self.input_proj, reversed(self.transformer_in_features)):
            x = features[name].float()
            srcs.append(proj(x))  # [N, conv_dim, H_l, W_l]
            pos.append(self.pe_layer(x))  # [N, conv_dim, H_l, W_l]
        memory, _, _ = self.transformer(srcs, pos)  # [N, S, conv_dim]

        batch = memory.shape[0]
        shapes = [src.shape[-2:] for src in srcs]
        out = [
            level.transpose(1, 2).view(batch, -1, height, width)
            for level, (height, width) in zip(memory.split([h * w for h, w in shapes], dim=1), shapes)
        ]  # coarse -> fine, each [N, conv_dim, H_l, W_l]

        fpn_inputs = self.in_features[: self.num_fpn_levels][::-1]
        for name, lateral_conv, output_conv in zip(fpn_inputs, self.lateral_convs, self.output_convs):
            lateral = lateral_conv(features[name].float())  # [N, conv_dim, H_f, W_f]
            # out[-1] may be a channels-last view of the encoder's output, which torch's CPU
            # bilinear interpolation handles about 3x slower than a contiguous copy.
            coarse = out[-1].contiguous() if out[-1].device.type == "cpu" else out[-1]
            upsampled = F.interpolate(coarse, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            out.append(output_conv(lateral + upsampled))

        multi_scale_features = out[: self.maskformer_num_feature_levels]
        return self.mask_features(out[-1]), out[0], multi_scale_features

    forward = forward_features  # a module call, so that the video model can keep it float32
