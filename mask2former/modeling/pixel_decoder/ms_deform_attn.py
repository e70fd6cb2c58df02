"""The multi-scale deformable attention layer of Deformable DETR."""

import math
import warnings

import torch
from torch import nn

from .ms_deform_attn_op import ms_deform_attn_from_offsets


class MSDeformAttn(nn.Module):
    """Each query attends to ``n_points`` learned offsets around its reference point on
    each of ``n_levels`` feature maps, per head, with softmax weights over levels x points.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        head_dim = d_model // n_heads
        if head_dim & (head_dim - 1) != 0:
            warnings.warn(
                f"MSDeformAttn: head dimension {head_dim} is not a power of 2, "
                "which the CUDA kernel handles less efficiently",
                stacklevel=2,
            )
        # Batch chunk of the CUDA kernel.
        self.im2col_step = 64
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points

        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official initialisation: offsets start on a star of ``n_heads`` directions,
        point ``k`` at distance ``k + 1`` (in pixels of each level); uniform attention.
        """
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)  # [M, 2]
        # Scale each direction so that its larger coordinate is +-1.
        directions = directions / directions.abs().max(-1, keepdim=True).values
        distances = torch.arange(1, self.n_points + 1, dtype=torch.float32)  # [P]
        offsets = directions[:, None, None, :] * distances[None, None, :, None]  # [M, 1, P, 2]
        offsets = offsets.expand(self.n_heads, self.n_levels, self.n_points, 2)  # [M, L, P, 2]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(offsets.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self, query: torch.Tensor, reference_points: torch.Tensor, input_flatten: torch.Tensor,
        input_spatial_shapes: torch.Tensor, input_level_start_index: torch.Tensor,
        input_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """query [N, Q, C] -> [N, Q, C]. reference_points: [N, Q, L, 2], (x, y) in [0, 1] with (0, 0) the
        top-left corner of the padded map; input_flatten: [N, S, C], the levels flattened and concatenated;
        input_spatial_shapes: [L, 2] (H_l, W_l); input_padding_mask: [N, S], True on padding, or None."""
        batch, num_queries, _ = query.shape
        num_inputs = input_flatten.shape[1]
        if reference_points.shape[-1] != 2:
            raise ValueError(f"MSDeformAttn: reference points must be (x, y), got {reference_points.shape}")

        value = self.value_proj(input_flatten)  # [N, S, C]
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        # The kernels sample float32 values (the projection may have run in low precision).
        value = value.float().view(batch, num_inputs, self.n_heads, self.d_model // self.n_heads)

        query = query.reshape(batch * num_queries, self.d_model)
        sampling = (batch, num_queries, self.n_heads, self.n_levels, self.n_points)
        # Offsets in pixels of each level, as fractions of the level's (W, H).
        offsets = self.sampling_offsets(query).view(*sampling, 2)  # [N, Q, M, L, P, 2]
        offsets = offsets / input_spatial_shapes.flip(-1).to(offsets.dtype)[:, None, :]
        logits = self.attention_weights(query).view(sampling)  # [N, Q, M, L, P]
        shapes, starts, step = input_spatial_shapes, input_level_start_index, self.im2col_step
        output = ms_deform_attn_from_offsets(value, shapes, starts, reference_points, offsets, logits, step)
        return self.output_proj(output)  # [N, Q, C]
