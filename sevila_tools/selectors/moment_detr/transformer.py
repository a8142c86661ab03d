"""The DETR encoder-decoder transformer of Moment-DETR, with the official module names (state-dict keys)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
]


def _activation(name: str) -> Callable[[Tensor], Tensor]:
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    raise ValueError(f"unsupported activation {name!r}")


class TransformerEncoderLayer(nn.Module):
    """DETR encoder layer: positions added to queries and keys of the self-attention."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        normalize_before: bool = False,
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = _activation(activation)
        self.normalize_before = normalize_before

    def forward(
        self, src: Tensor, src_key_padding_mask: Tensor | None = None, pos: Tensor | None = None
    ) -> Tensor:
        if self.normalize_before:
            s = self.norm1(src)
            q = k = s if pos is None else s + pos
            src = src + self.dropout1(
                self.self_attn(q, k, value=s, key_padding_mask=src_key_padding_mask, need_weights=False)[0]
            )
            s = self.norm2(src)
            return src + self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(s)))))
        q = k = src if pos is None else src + pos
        src2 = self.self_attn(q, k, value=src, key_padding_mask=src_key_padding_mask, need_weights=False)[0]
        src = self.norm1(src + self.dropout1(src2))
        src2 = self.linear2(self.dropout(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout2(src2))


class TransformerDecoderLayer(nn.Module):
    """DETR decoder layer: ``query_pos`` added to the queries (and self-attention keys), ``pos`` to memory."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        normalize_before: bool = False,
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = _activation(activation)
        self.normalize_before = normalize_before

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_key_padding_mask: Tensor | None = None,
        pos: Tensor | None = None,
        query_pos: Tensor | None = None,
    ) -> Tensor:
        def add(t: Tensor, p: Tensor | None) -> Tensor:
            return t if p is None else t + p

        if self.normalize_before:
            t = self.norm1(tgt)
            q = k = add(t, query_pos)
            tgt = tgt + self.dropout1(self.self_attn(q, k, value=t, need_weights=False)[0])
            t = self.norm2(tgt)
            tgt = tgt + self.dropout2(
                self.multihead_attn(
                    add(t, query_pos),
                    add(memory, pos),
                    value=memory,
                    key_padding_mask=memory_key_padding_mask,
                    need_weights=False,
                )[0]
            )
            t = self.norm3(tgt)
            return tgt + self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(t)))))
        q = k = add(tgt, query_pos)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, value=tgt, need_weights=False)[0]))
        tgt2 = self.multihead_attn(
            add(tgt, query_pos),
            add(memory, pos),
            value=memory,
            key_padding_mask=memory_key_padding_mask,
            need_weights=False,
        )[0]
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.linear2(self.dropout(self.activation(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(tgt2))


class TransformerEncoder(nn.Module):
    """Stack of encoder layers (no final norm in the post-norm setting)."""

    def __init__(self, layer: TransformerEncoderLayer, num_layers: int, norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm = norm

    def forward(
        self, src: Tensor, src_key_padding_mask: Tensor | None = None, pos: Tensor | None = None
    ) -> Tensor:
        out = src
        for layer in self.layers:
            out = layer(out, src_key_padding_mask=src_key_padding_mask, pos=pos)
        return self.norm(out) if self.norm is not None else out


class TransformerDecoder(nn.Module):
    """Stack of decoder layers; ``norm`` applied to every intermediate output when ``return_intermediate``."""

    def __init__(
        self,
        layer: TransformerDecoderLayer,
        num_layers: int,
        norm: nn.Module | None = None,
        return_intermediate: bool = False,
    ):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm = norm
        self.return_intermediate = return_intermediate

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_key_padding_mask: Tensor | None = None,
        pos: Tensor | None = None,
        query_pos: Tensor | None = None,
    ) -> Tensor:
        out = tgt
        intermediate = []
        for layer in self.layers:
            out = layer(
                out, memory, memory_key_padding_mask=memory_key_padding_mask, pos=pos, query_pos=query_pos
            )
            if self.return_intermediate:
                intermediate.append(self.norm(out) if self.norm is not None else out)
        if self.return_intermediate:
            return torch.stack(intermediate)
        if self.norm is not None:
            out = self.norm(out)
        return out.unsqueeze(0)


class Transformer(nn.Module):
    """DETR transformer as used by Moment-DETR (sequence-first attention, ``tgt = 0``)."""

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        normalize_before: bool = False,
        return_intermediate_dec: bool = False,
    ):
        super().__init__()
        enc_layer = TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, activation, normalize_before
        )
        self.encoder = TransformerEncoder(
            enc_layer, num_encoder_layers, nn.LayerNorm(d_model) if normalize_before else None
        )
        dec_layer = TransformerDecoderLayer(
            d_model, nhead, dim_feedforward, dropout, activation, normalize_before
        )
        self.decoder = TransformerDecoder(
            dec_layer, num_decoder_layers, nn.LayerNorm(d_model), return_intermediate=return_intermediate_dec
        )
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.d_model = d_model
        self.nhead = nhead

    def forward(
        self, src: Tensor, mask: Tensor, query_embed: Tensor, pos_embed: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``src``/``pos_embed`` ``(N, L, d)``, ``mask`` ``(N, L)`` True = padding, ``query_embed``
        ``(Q, d)``.
        Returns ``hs (layers, N, Q, d)`` and ``memory (N, L, d)``."""
        n = src.shape[0]
        src = src.permute(1, 0, 2)
        pos_embed = pos_embed.permute(1, 0, 2)
        query = query_embed.unsqueeze(1).repeat(1, n, 1)
        tgt = torch.zeros_like(query)
        memory = self.encoder(src, src_key_padding_mask=mask, pos=pos_embed)
        hs = self.decoder(tgt, memory, memory_key_padding_mask=mask, pos=pos_embed, query_pos=query)
        return hs.transpose(1, 2), memory.transpose(0, 1)
