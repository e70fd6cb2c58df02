"""The masked-attention transformer decoder of MinVIS, applied to every frame independently.

Registered under the official name. Per layer, queries cross-attend (masked) to one scale of the
pixel-decoder features, round-robin over 3 scales, then self-attend and pass a feed-forward block.
After every layer the normalised queries predict class logits and mask logits (mask-MLP embeddings
dotted with the per-pixel ``mask_features``, ``sigmoid(Q * F)`` in the paper). The final normalised
query states are returned as ``pred_embds``, the embeddings MinVIS tracks with.
"""

import functools

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d
from fvcore.nn import weight_init
from torch import nn
from torch.nn import functional as F

from ..position_encoding import PositionEmbeddingSine
from .layers import MLP, CrossAttentionLayer, FFNLayer, SelfAttentionLayer
from .registry import TRANSFORMER_DECODER_REGISTRY

# Masked attention looks at pixels whose predicted mask probability is >= this value.
MASK_ATTENTION_PROB_THRESHOLD = 0.5


def _pixel_rows(mask_features: torch.Tensor) -> torch.Tensor:
    """[N, H*W, C] view of ``mask_features`` [N, C, H, W] (a transposed one unless it is
    channels-last; no copy either way)."""
    n, c, h, w = mask_features.shape
    if mask_features.is_contiguous():
        return mask_features.view(n, c, h * w).transpose(1, 2)
    return mask_features.permute(0, 2, 3, 1).reshape(n, h * w, c)


@TRANSFORMER_DECODER_REGISTRY.register()
class VideoMultiScaleMaskedTransformerDecoder_frame(nn.Module):  # official name
    num_feature_levels = 3

    @configurable
    def __init__(
        self, in_channels: int, mask_classification: bool = True, *, num_classes: int, hidden_dim: int,
        num_queries: int, nheads: int, dim_feedforward: int, dec_layers: int, pre_norm: bool, mask_dim: int,
        enforce_input_project: bool,
    ):  # fmt: skip
        """``num_classes`` K real classes (logits have K + 1, last = no object); ``dec_layers``: the
        config's DEC_LAYERS - 1; ``enforce_input_project``: 1x1 input projections even if channels match."""
        super().__init__()
        if not mask_classification:
            raise ValueError("VideoMultiScaleMaskedTransformerDecoder_frame needs mask_classification=True")
        self.mask_classification = mask_classification
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.num_queries = num_queries
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)

        # The official decoder uses no dropout, whatever MODEL.MASK_FORMER.DROPOUT says.
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, dropout=0.0, normalize_before=pre_norm)
            for _ in range(dec_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, dropout=0.0, normalize_before=pre_norm)
            for _ in range(dec_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, dropout=0.0, normalize_before=pre_norm)
            for _ in range(dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)

        self.query_feat = nn.Embedding(num_queries, hidden_dim)  # learnable query features
        self.query_embed = nn.Embedding(num_queries, hidden_dim)  # learnable query positions
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_dim)

        self.input_proj = nn.ModuleList()
        for _ in range(self.num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
                weight_init.c2_xavier_fill(proj)
                self.input_proj.append(proj)
            else:
                self.input_proj.append(nn.Sequential())

        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_channels: int, mask_classification: bool) -> dict:
        mf = cfg.MODEL.MASK_FORMER
        if mf.DEC_LAYERS < 1:
            raise ValueError(f"MODEL.MASK_FORMER.DEC_LAYERS must be >= 1, got {mf.DEC_LAYERS}")
        return {
            "in_channels": in_channels,
            "mask_classification": mask_classification,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "hidden_dim": mf.HIDDEN_DIM,
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "nheads": mf.NHEADS,
            "dim_feedforward": mf.DIM_FEEDFORWARD,
            # DEC_LAYERS counts the prediction on the learnable queries as a layer.
            "dec_layers": mf.DEC_LAYERS - 1,
            "pre_norm": mf.PRE_NORM,
            "enforce_input_project": mf.ENFORCE_INPUT_PROJ,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
        }

    def forward(self, multi_scale_features: list[torch.Tensor], mask_features: torch.Tensor) -> dict:
        """3 maps ``[N, C_in, H_l, W_l]`` (coarsest first) and ``mask_features [N, mask_dim, H/4, W/4]``
        -> pred_logits ``[N, Q, K+1]``, pred_masks ``[N, Q, H/4, W/4]``, pred_embds ``[N, Q, C]`` and
        aux_outputs (deep supervision: the learnable queries' and every layer's but the last; empty in
        eval mode, where holding every layer's masks would only raise the peak memory)."""
        if len(multi_scale_features) != self.num_feature_levels:
            levels = self.num_feature_levels
            raise ValueError(f"expected {levels} feature levels, got {len(multi_scale_features)}")
        memories, positions, sizes = [], [], []
        for level, feature in enumerate(multi_scale_features):
            sizes.append(feature.shape[-2:])
            pos = self.pe_layer(feature).flatten(2)  # [N, C, HW]
            src = self.input_proj[level](feature).flatten(2) + self.level_embed.weight[level][None, :, None]
            positions.append(pos.permute(2, 0, 1))  # [HW, N, C]
            memories.append(src.permute(2, 0, 1))

        num_images = memories[0].shape[1]
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, num_images, 1)  # [Q, N, C]
        queries = self.query_feat.weight.unsqueeze(1).repeat(1, num_images, 1)

        pixels = _pixel_rows(mask_features)  # [N, H*W, C], read by the full-size mask predictions
        # In inference the predictions before the last one only give the next layer its
        # attention mask, at that layer's feature size. Bilinear resizing is linear, so
        # resizing the mask features once per size and taking the products there equals
        # resizing each prediction's full-size masks, for a fraction of the work.
        # (A list per level, not a dict by size: sizes are symbolic when torch.export traces this.)
        attention_pixels = None
        if not self.training:
            resize = functools.partial(F.interpolate, mode="bilinear", align_corners=False)
            # [N, h*w, C] per level
            attention_pixels = [_pixel_rows(resize(mask_features, size=size)) for size in sizes]

        def predict(layer: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
            # After ``layer`` layers; the last prediction needs no attention mask for a next layer.
            level = layer % self.num_feature_levels
            size = sizes[level] if layer < self.num_layers else None
            at_size = None if attention_pixels is None else attention_pixels[level]
            return self._predict(queries, pixels, mask_features.shape[-2:], size, at_size)

        logits, masks, attn_mask = predict(0)
        aux_outputs = []
        for i in range(self.num_layers):
            if self.training:
                aux_outputs.append({"pred_logits": logits, "pred_masks": masks})
            level = i % self.num_feature_levels
            # A query whose mask covers no pixel would attend to nothing: let it see everything.
            attn_mask[attn_mask.all(-1)] = False
            queries = self.transformer_cross_attention_layers[i](
                queries, memories[level], memory_mask=attn_mask, pos=positions[level], query_pos=query_pos
            )
            queries = self.transformer_self_attention_layers[i](queries, query_pos=query_pos)
            queries = self.transformer_ffn_layers[i](queries)
            logits, masks, attn_mask = predict(i + 1)

        return {
            "pred_logits": logits,
            "pred_masks": masks,
            "pred_embds": self.decoder_norm(queries).transpose(0, 1),  # [N, Q, C]
            "aux_outputs": aux_outputs,
        }

    def _predict(
        self, queries: torch.Tensor, pixels: torch.Tensor, mask_size: torch.Size,
        attn_size: torch.Size | None, attention_pixels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:  # fmt: skip
        """Class logits, mask logits and the next layer's attention mask (None without ``attn_size``)
        from queries [Q, N, C] and the mask features as ``pixels`` [N, H*W, C]. With ``attn_size`` and
        ``attention_pixels`` (inference: the mask features at that size, [N, h*w, C]) mask logits are None."""
        normed = self.decoder_norm(queries).transpose(0, 1)  # [N, Q, C]
        class_logits = self.class_embed(normed)  # [N, Q, K+1]
        mask_embed = self.mask_embed(normed)  # [N, Q, mask_dim]
        if attn_size is not None and attention_pixels is not None:
            resized = torch.matmul(mask_embed, attention_pixels.transpose(1, 2))  # [N, Q, h*w]
            return class_logits, None, self._attention_mask(resized)
        # [N, H*W, Q] viewed as [N, Q, H/4, W/4]: channels-last, which torch's CPU
        # interpolation below reads several times faster than the contiguous layout.
        mask_logits = torch.matmul(pixels, mask_embed.transpose(1, 2))
        mask_logits = mask_logits.view(mask_embed.shape[0], *mask_size, -1).permute(0, 3, 1, 2)
        if attn_size is None:
            return class_logits, mask_logits, None
        resized = F.interpolate(mask_logits, size=attn_size, mode="bilinear", align_corners=False)
        return class_logits, mask_logits, self._attention_mask(resized.flatten(2))

    def _attention_mask(self, resized_logits: torch.Tensor) -> torch.Tensor:
        """True where attention is blocked, from mask logits [N, Q, h*w] at the attention size:
        [Q, h*w] for one image (nn.MultiheadAttention shares it by all heads), otherwise one
        mask per (image, head), [N * heads, Q, h*w]."""
        blocked = (resized_logits.sigmoid() < MASK_ATTENTION_PROB_THRESHOLD).detach()
        if blocked.shape[0] == 1:
            return blocked[0]
        return blocked.unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1)
