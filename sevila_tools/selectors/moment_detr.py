"""Moment-DETR (CLIP-only checkpoint of ``jayleicn/moment_detr``) as a keyframe selector.

Spec: ``selectors.md`` §4-5.

The model is re-implemented here with the **exact module names** of the official code, so an official or
``line/lighthouse`` CLIP checkpoint loads strictly: 92 state-dict keys, 4,228,873 parameters at full size,
514-d video input (512-d CLIP image embedding + 2-d TEF) and 512-d text input (CLIP text token states).

Pipeline (``selectors.md`` §4.4-4.7):

1. **Clips**: the segment ``[start, end]`` is cut into 2-s clips (0.5 fps; ``ceil(duration / 2)`` clips; for
   ``0 < duration < 2.1`` s, ffmpeg's special case ``fps = 2 / max(int(duration), 1)``). Clip ``k`` is
   represented by the last native frame before its centre ``(k + 0.5) * clip_len`` (ffmpeg's ``fps`` filter,
   ``round=near``).
2. **Video features**: native-resolution frame -> short side 224 (bicubic) + centre crop 224 -> ``x / 255``,
   ``(x - mean) / (std + 1e-8)`` -> CLIP projected image embedding -> ``F.normalize(eps=1e-5)`` -> TEF
   ``[k / T, (k + 1) / T]`` appended (not normalised).
3. **Query features**: CLIP text tokens truncated to **32** (BOS and EOS kept) -> the text transformer's
   final-LayerNorm token states (``last_hidden_state``, *not* projected) sliced to the valid length ->
   ``F.normalize(eps=1e-5)`` per token. ``text_mode="question_only"`` (default) uses the question alone
   because question + options exceed 32 tokens for most NExT-QA questions.
4. **Outputs**: windows ``[st, ed, score]`` in seconds (``(centre -/+ width / 2) * T * clip_len``; score =
   ``softmax(pred_logits)[..., 0]``, **class 0 is foreground**), sorted by score, rounded to 4 decimals, not
   clamped; ``saliency_scores`` one per clip. Raw outputs are kept in the record.

**Long videos** (> 75 clips = 150 s, the checkpoint's training range; ``long_video``):

- ``refuse``: the official behaviour (``run.py`` asserts ``T <= 75``); raises a one-line
  :class:`~sevila_tools.errors.InputError`.
- ``stride``: keep 75 of the T clips, evenly spaced (clip ``floor((i + 0.5) * T / 75)``); TEF and positions
  are relative, so the model runs, but each token then stands for ``T * 2 / 75`` s (out of distribution).
- ``sliding`` (**library default**): 150-s windows of 75 clips (stride 75 clips, the last window aligned to
  the end of the video so every window is full); each window is exactly in the training regime (QVHighlights
  clips are 150 s, 2-s tokens). Windows from all chunks are converted to absolute seconds and merged by score;
  a clip covered by two chunks keeps its highest saliency. Videos of <= 150 s are processed exactly as the
  official code in every mode.

``sliding`` is the default because a library call on an ordinary long video (many NExT-QA videos are several
minutes long) should return frames by a documented, in-distribution rule rather than fail; evaluation configs
must still set ``long_video`` explicitly and the rule applied is recorded in every selection.

**Frames** (``frame_strategy``; both return frames sorted by time):

- ``top_window_uniform`` (default): best-scoring window, clamped to ``[0, duration]``, native frames ``[st *
  fps, ed * fps)``, then ``k`` frames by SeViLA's midpoint rule (``n = k``) inside it. A window narrower than
  ``k`` frames is padded by repeating its last index (flagged ``padded``); an empty window falls back to the
  next one.
- ``topk_saliency``: the ``k`` clips with the highest saliency (ties -> lower clip index; clips starting past
  the end excluded), frame at each clip centre ``round(t * fps)`` clamped to the segment; fewer than ``k``
  clips -> all of them, padded by repetition (flagged).

``snap_to_candidates=True`` moves each frame to the nearest still-unused SeViLA candidate (ties -> the earlier
candidate), so the Answerer sees exactly the pixels of the SeViLA pipeline.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sevila_tools.errors import CheckpointError, InputError
from sevila_tools.selectors.base import Selection, Selector, SelectorInput, register

__all__ = [
    "CLIP_LEN",
    "DEFAULT_LONG_VIDEO",
    "DEFAULT_OPT",
    "FRAME_STRATEGIES",
    "LONG_VIDEO_RULES",
    "MAX_CLIPS",
    "MAX_QUERY_TOKENS",
    "MomentDETR",
    "MomentDETRPrediction",
    "MomentDETRSelector",
    "PositionEmbeddingSine",
    "build_moment_detr",
    "build_tiny_moment_detr",
    "check_state_dict",
    "clip_grid",
    "frames_top_window_uniform",
    "frames_topk_saliency",
    "load_moment_detr",
    "midpoint_indices",
    "postprocess",
    "run_moment_detr",
    "save_moment_detr",
    "snap_to_candidates",
    "tef",
]

CLIP_LEN = 2.0  # seconds per clip (0.5 fps)
MAX_CLIPS = 75  # 150 s: the checkpoint's training range
MAX_QUERY_TOKENS = 32  # SOT + 30 BPE tokens + EOT
LONG_VIDEO_RULES = ("refuse", "stride", "sliding")
DEFAULT_LONG_VIDEO = "refuse"  # library default per selectors.md §4.8; eval/ablate set one explicitly
FRAME_STRATEGIES = ("top_window_uniform", "topk_saliency")
TEXT_MODES = ("question_only", "question_options")

#: Architecture options of the official CLIP-only checkpoint (``opt.json``; ``v_feat_dim`` before the +2 TEF).
DEFAULT_OPT: dict[str, Any] = {
    "ctx_mode": "video_tef",
    "v_feat_dim": 512,
    "t_feat_dim": 512,
    "clip_length": 2,
    "max_q_l": 32,
    "max_v_l": 75,
    "position_embedding": "sine",
    "enc_layers": 2,
    "dec_layers": 2,
    "dim_feedforward": 1024,
    "hidden_dim": 256,
    "input_dropout": 0.5,
    "dropout": 0.1,
    "use_txt_pos": False,
    "nheads": 8,
    "num_queries": 10,
    "pre_norm": False,
    "n_input_proj": 2,
    "contrastive_hdim": 64,
    "aux_loss": True,
    "span_loss_type": "l1",
    "contrastive_align_loss": False,
}


# ==========================================================================================================
# model (module names = state-dict keys of the official code)


class LinearLayer(nn.Module):
    """``LayerNorm(in)`` -> ``Dropout`` -> ``Linear(in, out)`` -> optional ReLU.

    ``net.0`` is the Dropout, ``net.1`` the Linear (official key names).
    """

    def __init__(
        self, in_hsz: int, out_hsz: int, layer_norm: bool = True, dropout: float = 0.1, relu: bool = True
    ):
        super().__init__()
        self.relu = relu
        self.layer_norm = layer_norm
        if layer_norm:
            self.LayerNorm = nn.LayerNorm(in_hsz)
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_hsz, out_hsz))

    def forward(self, x: Tensor) -> Tensor:
        if self.layer_norm:
            x = self.LayerNorm(x)
        x = self.net(x)
        return F.relu(x) if self.relu else x


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU in between (``layers.{i}``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim], strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


class TrainablePositionalEncoding(nn.Module):
    """Learned text positions (``position_embeddings``, ``LayerNorm``); present in the checkpoint, unused when
    ``use_txt_pos`` is false (the official setting)."""

    def __init__(self, max_position_embeddings: int, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.position_embeddings = nn.Embedding(max_position_embeddings, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_feat: Tensor) -> Tensor:
        n, length = input_feat.shape[:2]
        ids = torch.arange(length, device=input_feat.device).unsqueeze(0).expand(n, length)
        return self.dropout(self.LayerNorm(input_feat + self.position_embeddings(ids)))


class PositionEmbeddingSine(nn.Module):
    """1-D sine positions: ``x = cumsum(mask)``, ``x = x / (x_last + 1e-6) * scale`` (when ``normalize``),
    ``dim_t = temperature ** (2 * floor(i / 2) / num_pos_feats)``, ``p = x / dim_t``, then ``sin`` of the even
    and ``cos`` of the odd channels interleaved -> ``(N, L, num_pos_feats)``. No parameters."""

    def __init__(
        self,
        num_pos_feats: int = 64,
        temperature: int = 10000,
        normalize: bool = False,
        scale: float | None = None,
    ):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("normalize should be True if scale is passed")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x_embed = mask.cumsum(1, dtype=torch.float32)
        if self.normalize:
            x_embed = x_embed / (x_embed[:, -1:] + 1e-6) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        pos = x_embed[:, :, None] / dim_t
        return torch.stack((pos[:, :, 0::2].sin(), pos[:, :, 1::2].cos()), dim=3).flatten(2)


def _activation(name: str):
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


class MomentDETR(nn.Module):
    """Moment-DETR with the official module names (``transformer``, ``span_embed``, ``class_embed``,
    ``query_embed``, ``input_txt_proj``, ``input_vid_proj``, ``txt_position_embed``, ``saliency_proj``).

    ``forward(src_txt (N, L, txt_dim), src_txt_mask (N, L), src_vid (N, T, vid_dim), src_vid_mask (N, T))``
    with float masks (1 = valid) returns ``pred_logits (N, Q, 2)``, ``pred_spans (N, Q, 2)`` (sigmoid
    ``(centre, width)``), ``saliency_scores (N, T)`` and, with ``aux_loss``, ``aux_outputs`` (one dict per
    earlier decoder layer).
    """

    def __init__(
        self,
        transformer: Transformer,
        position_embed: PositionEmbeddingSine,
        txt_position_embed: TrainablePositionalEncoding,
        txt_dim: int,
        vid_dim: int,
        num_queries: int,
        input_dropout: float,
        aux_loss: bool = False,
        contrastive_align_loss: bool = False,
        contrastive_hdim: int = 64,
        max_v_l: int = 75,
        span_loss_type: str = "l1",
        use_txt_pos: bool = False,
        n_input_proj: int = 2,
    ):
        super().__init__()
        if span_loss_type != "l1":
            raise CheckpointError(f"only span_loss_type 'l1' is supported (got {span_loss_type!r})")
        if not 1 <= n_input_proj <= 3:
            raise CheckpointError(f"n_input_proj must be 1, 2 or 3 (got {n_input_proj})")
        self.num_queries = num_queries
        self.transformer = transformer
        self.position_embed = position_embed
        self.txt_position_embed = txt_position_embed
        hidden_dim = transformer.d_model
        self.hidden_dim = hidden_dim
        self.txt_dim = txt_dim
        self.vid_dim = vid_dim
        self.span_loss_type = span_loss_type
        self.max_v_l = max_v_l
        self.span_embed = MLP(hidden_dim, hidden_dim, 2, 3)
        self.class_embed = nn.Linear(hidden_dim, 2)  # 0: foreground, 1: background
        self.use_txt_pos = use_txt_pos
        self.n_input_proj = n_input_proj
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        relu = [True] * 3
        relu[n_input_proj - 1] = False
        self.input_txt_proj = nn.Sequential(
            *[
                LinearLayer(
                    txt_dim if i == 0 else hidden_dim,
                    hidden_dim,
                    layer_norm=True,
                    dropout=input_dropout,
                    relu=relu[i],
                )
                for i in range(n_input_proj)
            ]
        )
        self.input_vid_proj = nn.Sequential(
            *[
                LinearLayer(
                    vid_dim if i == 0 else hidden_dim,
                    hidden_dim,
                    layer_norm=True,
                    dropout=input_dropout,
                    relu=relu[i],
                )
                for i in range(n_input_proj)
            ]
        )
        self.contrastive_align_loss = contrastive_align_loss
        if contrastive_align_loss:
            self.contrastive_align_projection_query = nn.Linear(hidden_dim, contrastive_hdim)
            self.contrastive_align_projection_txt = nn.Linear(hidden_dim, contrastive_hdim)
            self.contrastive_align_projection_vid = nn.Linear(hidden_dim, contrastive_hdim)
        self.saliency_proj = nn.Linear(hidden_dim, 1)
        self.aux_loss = aux_loss
        self.opt: dict[str, Any] = {}

    def forward(
        self, src_txt: Tensor, src_txt_mask: Tensor, src_vid: Tensor, src_vid_mask: Tensor
    ) -> dict[str, Any]:
        src_vid = self.input_vid_proj(src_vid)
        src_txt = self.input_txt_proj(src_txt)
        src = torch.cat([src_vid, src_txt], dim=1)
        mask = torch.cat([src_vid_mask, src_txt_mask], dim=1).bool()
        pos_vid = self.position_embed(src_vid, src_vid_mask)
        pos_txt = self.txt_position_embed(src_txt) if self.use_txt_pos else torch.zeros_like(src_txt)
        pos = torch.cat([pos_vid, pos_txt], dim=1)
        hs, memory = self.transformer(src, ~mask, self.query_embed.weight, pos)
        outputs_class = self.class_embed(hs)
        outputs_coord = self.span_embed(hs).sigmoid()
        out: dict[str, Any] = {"pred_logits": outputs_class[-1], "pred_spans": outputs_coord[-1]}
        vid_mem = memory[:, : src_vid.shape[1]]
        if self.contrastive_align_loss:
            txt_mem = memory[:, src_vid.shape[1] :]
            out["proj_queries"] = F.normalize(self.contrastive_align_projection_query(hs), p=2, dim=-1)[-1]
            out["proj_txt_mem"] = F.normalize(self.contrastive_align_projection_txt(txt_mem), p=2, dim=-1)
            out["proj_vid_mem"] = F.normalize(self.contrastive_align_projection_vid(vid_mem), p=2, dim=-1)
        out["saliency_scores"] = self.saliency_proj(vid_mem).squeeze(-1)
        if self.aux_loss:
            out["aux_outputs"] = [
                {"pred_logits": a, "pred_spans": b}
                for a, b in zip(outputs_class[:-1], outputs_coord[:-1], strict=True)
            ]
        return out


# ==========================================================================================================
# building and loading


def _opt_dict(opt: Any) -> dict[str, Any]:
    if opt is None:
        return {}
    if isinstance(opt, dict):
        d = dict(opt)
    elif isinstance(opt, argparse.Namespace) or hasattr(opt, "__dict__"):
        d = dict(vars(opt))
    else:
        raise CheckpointError(f"Moment-DETR options must be a dict or Namespace, not {type(opt).__name__}")
    return {k: (str(v) if isinstance(v, torch.device) else v) for k, v in d.items()}


def resolve_opt(opt: Any) -> dict[str, Any]:
    """Architecture options with defaults filled in and ``vid_dim`` computed.

    ``opt.json`` stores ``v_feat_dim`` *before* the TEF: 2 is added when ``ctx_mode`` contains ``"tef"``. The
    Namespace pickled in official checkpoints (recognisable by its ``use_tef`` key) already includes the +2.
    The result follows the Namespace convention (``use_tef`` set, ``v_feat_dim == vid_dim``), so resolving it
    again is a no-op.
    """
    d = {**DEFAULT_OPT, **_opt_dict(opt)}
    use_tef = "tef" in str(d["ctx_mode"])
    if "video" not in str(d["ctx_mode"]):
        raise CheckpointError(
            f"ctx_mode {d['ctx_mode']!r} has no video input; only video(+tef) models are supported"
        )
    if "use_tef" in _opt_dict(opt):  # post-processed training Namespace: v_feat_dim already includes the TEF
        vid_dim = int(d["v_feat_dim"])
        use_tef = bool(d["use_tef"])
    else:
        vid_dim = int(d["v_feat_dim"]) + (2 if use_tef else 0)
    if d.get("position_embedding", "sine") not in ("sine", "v2"):
        raise CheckpointError(
            f"position_embedding {d['position_embedding']!r} is not supported (only 'sine')"
        )
    d["use_tef"] = use_tef
    d["v_feat_dim"] = vid_dim
    d["vid_dim"] = vid_dim
    return d


def build_moment_detr(opt: Any) -> MomentDETR:
    """Build a randomly initialised :class:`MomentDETR` from ``opt.json``-style options (dict or Namespace).

    With the official ``opt.json`` this is the 4,228,873-parameter model with a 514-d video input. The
    returned model is in eval mode and carries the resolved options in ``model.opt``.
    """
    d = resolve_opt(opt)
    transformer = Transformer(
        d_model=int(d["hidden_dim"]),
        nhead=int(d["nheads"]),
        num_encoder_layers=int(d["enc_layers"]),
        num_decoder_layers=int(d["dec_layers"]),
        dim_feedforward=int(d["dim_feedforward"]),
        dropout=float(d["dropout"]),
        activation="relu",
        normalize_before=bool(d["pre_norm"]),
        return_intermediate_dec=True,
    )
    pos = PositionEmbeddingSine(int(d["hidden_dim"]), normalize=True)
    txt_pos = TrainablePositionalEncoding(
        int(d["max_q_l"]), int(d["hidden_dim"]), dropout=float(d["input_dropout"])
    )
    model = MomentDETR(
        transformer,
        pos,
        txt_pos,
        txt_dim=int(d["t_feat_dim"]),
        vid_dim=int(d["vid_dim"]),
        num_queries=int(d["num_queries"]),
        input_dropout=float(d["input_dropout"]),
        aux_loss=bool(d["aux_loss"]),
        contrastive_align_loss=bool(d["contrastive_align_loss"]),
        contrastive_hdim=int(d["contrastive_hdim"]),
        max_v_l=int(d["max_v_l"]),
        span_loss_type=str(d["span_loss_type"]),
        use_txt_pos=bool(d["use_txt_pos"]),
        n_input_proj=int(d["n_input_proj"]),
    )
    model.opt = d
    return model.eval()


def build_tiny_moment_detr(clip_dim: int, text_dim: int, seed: int = 0) -> MomentDETR:
    """A seeded random Moment-DETR with the official key names at toy width (hidden 32, 4 heads, FFN 64) whose
    inputs match a (tiny) CLIP: video ``clip_dim + 2`` (projected image embedding + TEF), text ``text_dim``
    (text-tower hidden size)."""
    opt = {
        **DEFAULT_OPT,
        "v_feat_dim": clip_dim,
        "t_feat_dim": text_dim,
        "hidden_dim": 32,
        "nheads": 4,
        "dim_feedforward": 64,
    }
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build_moment_detr(opt)
    finally:
        torch.random.set_rng_state(state)
    return model


def _names(names: Sequence[str], limit: int = 8) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def check_state_dict(model: nn.Module, state_dict: dict[str, Tensor], source: str = "checkpoint") -> None:
    """Raise a one-line :class:`CheckpointError` naming missing keys, unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(getattr(state_dict[k], "shape", ())) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {_names(mismatched, 4)}")
    if problems:
        raise CheckpointError(
            f"{source} does not match the Moment-DETR (CLIP-only) layout; " + "; ".join(problems)
        )


def _opt_from_state_dict(sd: dict[str, Tensor]) -> dict[str, Any]:
    """Architecture options inferred from tensor shapes (``nheads`` cannot be inferred: 8 assumed)."""
    try:
        hidden = int(sd["query_embed.weight"].shape[1])
        return {
            "ctx_mode": "video_tef",
            "use_tef": True,
            "v_feat_dim": int(sd["input_vid_proj.0.LayerNorm.weight"].shape[0]),
            "t_feat_dim": int(sd["input_txt_proj.0.LayerNorm.weight"].shape[0]),
            "hidden_dim": hidden,
            "num_queries": int(sd["query_embed.weight"].shape[0]),
            "max_q_l": int(sd["txt_position_embed.position_embeddings.weight"].shape[0]),
            "dim_feedforward": int(sd["transformer.encoder.layers.0.linear1.weight"].shape[0]),
            "enc_layers": len({k.split(".")[3] for k in sd if k.startswith("transformer.encoder.layers.")}),
            "dec_layers": len({k.split(".")[3] for k in sd if k.startswith("transformer.decoder.layers.")}),
            "n_input_proj": len({k.split(".")[1] for k in sd if k.startswith("input_vid_proj.")}),
            "contrastive_align_loss": any(k.startswith("contrastive_align_projection_") for k in sd),
        }
    except KeyError as exc:
        raise CheckpointError(
            f"checkpoint does not match the Moment-DETR (CLIP-only) layout; missing keys: {exc.args[0]}"
        ) from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read Moment-DETR options {path}: {exc}") from None


def load_moment_detr(
    path: str | Path,
    trusted: bool = False,
    opt: Any = None,
    device: str | torch.device = "cpu",
) -> MomentDETR:
    """Load a Moment-DETR checkpoint **strictly** (every key and shape must match).

    Accepted files:

    - an official / lighthouse ``.ckpt`` (``{"model": state_dict, "opt": ..., ...}``; only ``ckpt["model"]``
      is used for weights). It is read with ``torch.load(weights_only=True)`` unless ``trusted=True``. The
      official file pickles an ``argparse.Namespace`` (lighthouse: ``EasyDict``), which ``weights_only=True``
      refuses: a one-line :class:`CheckpointError` then asks for ``trusted=True`` (CLI
      ``--trust-checkpoint``); ``trusted=True`` uses ``weights_only=False`` and warns that unpickling can
      execute code.
    - a ``.safetensors`` state dict, with its options from ``opt`` or an ``opt.json`` next to it.

    Options come from ``opt`` (dict/Namespace), else ``ckpt["opt"]``, else ``opt.json`` beside the file, else
    they are inferred from the tensor shapes. Returns the model in eval mode on ``device`` with ``model.opt``
    set.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Moment-DETR checkpoint not found: {path}")
    sidecar = path.parent / "opt.json"
    ckpt_opt: Any = None
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            sd = load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"cannot read safetensors file {path}: {exc}") from None
    else:
        if trusted:
            warnings.warn(
                f"loading {path} with weights_only=False: unpickling can execute arbitrary code; "
                "only do this for checkpoints from a trusted source",
                UserWarning,
                stacklevel=2,
            )
        try:
            ckpt = torch.load(str(path), map_location="cpu", weights_only=not trusted)
        except pickle.UnpicklingError:
            raise CheckpointError(
                f"{path} contains pickled Python objects (e.g. the training options Namespace) that "
                "torch.load(weights_only=True) refuses; if you trust this file, pass trusted=True "
                "(CLI: --trust-checkpoint)"
            ) from None
        except ModuleNotFoundError as exc:
            raise CheckpointError(
                f"cannot unpickle {path}: module {exc.name!r} is not installed "
                "(lighthouse checkpoints need 'easydict')"
            ) from None
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                f"cannot read checkpoint {path}: {str(exc).strip().splitlines()[0]}"
            ) from None
        if isinstance(ckpt, dict) and "model" in ckpt:
            sd = ckpt["model"]
            ckpt_opt = ckpt.get("opt")
        elif isinstance(ckpt, dict) and all(isinstance(v, Tensor) for v in ckpt.values()):
            sd = ckpt
        else:
            raise CheckpointError(f"{path} has no 'model' state dict (keys: {_names(list(ckpt)[:20])})")
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: 'model' is not a state dict")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    if opt is not None:
        options = _opt_dict(opt)
    elif ckpt_opt is not None:
        options = _opt_dict(ckpt_opt)
    elif sidecar.is_file():
        options = _read_json(sidecar)
    else:
        options = _opt_from_state_dict(sd)
    model = build_moment_detr(options)
    check_state_dict(model, sd, source=str(path))
    model.load_state_dict(sd, strict=True)
    return model.to(device).eval()


def save_moment_detr(model: MomentDETR, path: str | Path) -> Path:
    """Save weights as ``.safetensors`` (path suffix) or a weights-only ``.ckpt`` (``{"model", "opt"}`` with a
    plain-dict ``opt``); for safetensors an ``opt.json`` (``v_feat_dim`` before the TEF) is written beside."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opt = dict(model.opt)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
        plain = {k: v for k, v in opt.items() if k not in ("use_tef", "vid_dim")}
        plain["v_feat_dim"] = int(model.vid_dim) - (2 if opt.get("use_tef") else 0)
        (path.parent / "opt.json").write_text(json.dumps(plain, indent=4))
    else:
        torch.save({"model": sd, "opt": opt}, str(path))
    return path


# ==========================================================================================================
# features


def tef(num_clips: int) -> Tensor:
    """Temporal endpoint features ``(T, 2)``: ``[k / T, (k + 1) / T]``."""
    st = torch.arange(0, num_clips, 1.0) / num_clips
    return torch.stack([st, st + 1.0 / num_clips], dim=1)


@dataclass
class ClipGrid:
    """The 2-s clips of a segment: native frame per clip, effective clip length and segment geometry."""

    frame_indices: list[int]
    clip_len: float
    start_frame: int
    end_frame: int
    fps: float
    duration: float

    @property
    def num_clips(self) -> int:
        """Number of clips ``T``."""
        return len(self.frame_indices)


def clip_grid(start_frame: int, end_frame: int, fps: float, clip_len: float = CLIP_LEN) -> ClipGrid:
    """Clips of native frames ``[start_frame, end_frame)`` at ``1 / clip_len`` fps (``selectors.md`` §4.4).

    ``T = ceil(duration / clip_len)``; clip ``k`` uses the last frame with time ``< (k + 0.5) * clip_len``
    (relative to the segment). For ``0 < duration < 2.1`` s the clip length becomes
    ``max(int(duration), 1) / 2`` (ffmpeg's ``fps = 2 / max(int(duration), 1)`` special case).
    """
    if fps <= 0:
        raise InputError(f"invalid frame rate {fps}")
    n = int(end_frame) - int(start_frame)
    if n <= 0:
        raise InputError(f"empty segment: frames [{start_frame}, {end_frame})")
    duration = n / fps
    step = clip_len
    if duration < 2.1:
        step = max(int(duration), 1) / 2.0
    num = max(1, math.ceil(duration / step - 1e-9))
    idx = []
    for k in range(num):
        rel = math.ceil((k + 0.5) * step * fps - 1e-9) - 1
        idx.append(int(start_frame) + min(max(rel, 0), n - 1))
    return ClipGrid(idx, step, int(start_frame), int(end_frame), float(fps), duration)


# ==========================================================================================================
# inference and post-processing


@dataclass
class MomentDETRPrediction:
    """Moment-DETR output for one query, in seconds relative to the segment start.

    ``windows``: ``[st, ed, score]`` sorted by score (4 decimals, not clamped); ``saliency``: one score per
    entry of ``clip_centres`` (seconds); ``raw``: raw model outputs per chunk (``pred_logits``,
    ``pred_spans``, ``saliency_scores``, offsets).
    """

    windows: list[list[float]]
    saliency: list[float]
    clip_centres: list[float]
    clip_ids: list[int]
    clip_len: float
    num_clips: int
    long_video: str
    applied: str
    raw: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def postprocess(
    outputs: dict[str, Tensor], span_duration: float, offset: float = 0.0, num_valid: int | None = None
) -> tuple[list[list[float]], list[float]]:
    """``run.py``-style post-processing of one sample (batch index 0).

    Windows ``[c - w/2, c + w/2] * span_duration + offset`` with score ``softmax(pred_logits)[..., 0]``
    (class 0 = foreground), all queries kept, sorted by score descending, every number rounded to 4 decimals,
    no clamping, no NMS. Saliency: scores of the first ``num_valid`` clips cast to fp16 (as ``run.py`` does),
    then rounded to 4 decimals (full-precision values stay in the raw record).
    """
    prob = F.softmax(outputs["pred_logits"][0].float(), dim=-1)[:, 0]
    spans = outputs["pred_spans"][0].float()
    st = (spans[:, 0] - spans[:, 1] / 2) * span_duration + offset
    ed = (spans[:, 0] + spans[:, 1] / 2) * span_duration + offset
    rows = [
        [float(a), float(b), float(s)]
        for a, b, s in zip(st.tolist(), ed.tolist(), prob.tolist(), strict=True)
    ]
    rows.sort(key=lambda r: r[2], reverse=True)
    windows = [[float(f"{x:.4f}") for x in r] for r in rows]
    sal = outputs["saliency_scores"][0].half().float()
    if num_valid is not None:
        sal = sal[:num_valid]
    return windows, [round(float(x), 4) for x in sal.tolist()]


@torch.no_grad()
def _forward(model: MomentDETR, vid: Tensor, query: Tensor) -> dict[str, Tensor]:
    param = next(model.parameters())
    dev, dtype = param.device, param.dtype
    t = vid.shape[0]
    src_vid = torch.cat([vid.float(), tef(t)], dim=1).unsqueeze(0).to(dev, dtype)
    src_txt = query.float().unsqueeze(0).to(dev, dtype)
    ones_t = torch.ones(1, t, device=dev, dtype=dtype)
    ones_q = torch.ones(1, query.shape[0], device=dev, dtype=dtype)
    out = model(src_txt, ones_q, src_vid, ones_t)
    return {k: out[k].detach().float().cpu() for k in ("pred_logits", "pred_spans", "saliency_scores")}


def _raw(out: dict[str, Tensor], **info: Any) -> dict[str, Any]:
    return {
        **info,
        **{
            k: [[round(float(x), 6) for x in row] for row in out[k][0].tolist()]
            for k in ("pred_logits", "pred_spans")
        },
        "saliency_scores": [round(float(x), 6) for x in out["saliency_scores"][0].tolist()],
    }


def run_moment_detr(
    model: MomentDETR,
    video_feats: Tensor,
    query_feats: Tensor,
    clip_len: float = CLIP_LEN,
    long_video: str = DEFAULT_LONG_VIDEO,
    max_clips: int = MAX_CLIPS,
) -> MomentDETRPrediction:
    """Run Moment-DETR on normalised CLIP features with the long-video rule (module docstring).

    ``video_feats`` ``(T, D)`` (TEF not yet appended; it is computed per model call) and ``query_feats``
    ``(L, D_txt)`` are already L2-normalised. Windows are in seconds on the grid ``T * clip_len``.
    """
    if long_video not in LONG_VIDEO_RULES:
        raise InputError(
            f"unknown long_video rule {long_video!r}; choose one of: {', '.join(LONG_VIDEO_RULES)}"
        )
    if not model.opt.get("use_tef", True):
        raise InputError(
            "this Moment-DETR model was trained without TEF (ctx_mode without 'tef'); unsupported"
        )
    if video_feats.ndim != 2 or video_feats.shape[0] < 1:
        raise InputError(f"video features must be (T >= 1, D), got {tuple(video_feats.shape)}")
    if video_feats.shape[1] + 2 != model.vid_dim:
        raise InputError(
            f"video features are {video_feats.shape[1]}-d but the model expects {model.vid_dim - 2} + 2 (TEF)"
        )
    if query_feats.ndim != 2 or query_feats.shape[1] != model.txt_dim or query_feats.shape[0] < 1:
        raise InputError(f"query features must be (L >= 1, {model.txt_dim}), got {tuple(query_feats.shape)}")
    t = int(video_feats.shape[0])
    centres_all = [(c + 0.5) * clip_len for c in range(t)]
    if t <= max_clips:
        out = _forward(model, video_feats, query_feats)
        windows, sal = postprocess(out, t * clip_len, num_valid=t)
        return MomentDETRPrediction(
            windows,
            sal,
            centres_all,
            list(range(t)),
            clip_len,
            t,
            long_video,
            "none",
            [_raw(out, offset_s=0.0, clip_ids=[0, t])],
        )
    if long_video == "refuse":
        raise InputError(
            f"segment has {t} clips of {clip_len:g} s ({t * clip_len:.0f} s) but the Moment-DETR checkpoint "
            f"supports at most {max_clips} ({max_clips * clip_len:.0f} s); set moment_detr.long_video to "
            "'stride' or 'sliding'"
        )
    if long_video == "stride":
        pick = [int(math.floor((i + 0.5) * t / max_clips)) for i in range(max_clips)]
        out = _forward(model, video_feats[pick], query_feats)
        windows, sal = postprocess(out, t * clip_len, num_valid=max_clips)
        return MomentDETRPrediction(
            windows,
            sal,
            [centres_all[p] for p in pick],
            pick,
            clip_len,
            t,
            long_video,
            "stride",
            [_raw(out, offset_s=0.0, clip_ids=pick)],
        )
    # sliding: full windows of max_clips clips, the last one aligned to the end
    starts = list(range(0, t - max_clips + 1, max_clips))
    if starts[-1] + max_clips < t:
        starts.append(t - max_clips)
    all_windows: list[list[float]] = []
    best: dict[int, float] = {}
    raw = []
    for s in starts:
        out = _forward(model, video_feats[s : s + max_clips], query_feats)
        windows, sal = postprocess(out, max_clips * clip_len, offset=s * clip_len, num_valid=max_clips)
        all_windows.extend(windows)
        for j, v in enumerate(sal):
            best[s + j] = max(best.get(s + j, -math.inf), v)
        raw.append(_raw(out, offset_s=s * clip_len, clip_ids=[s, s + max_clips]))
    all_windows.sort(key=lambda r: r[2], reverse=True)
    return MomentDETRPrediction(
        all_windows,
        [best[c] for c in range(t)],
        centres_all,
        list(range(t)),
        clip_len,
        t,
        long_video,
        "sliding",
        raw,
    )


# ==========================================================================================================
# windows / saliency -> frames


def midpoint_indices(start: int, end: int, n: int) -> list[int]:
    """SeViLA's midpoint rule: ``edges = linspace(start, end, n + 1).astype(int)``; frame j is
    ``(edges[j] + edges[j + 1]) // 2``."""
    edges = np.linspace(start, end, n + 1).astype(int)
    return [int((edges[j] + edges[j + 1]) // 2) for j in range(n)]


def frames_top_window_uniform(
    windows: Sequence[Sequence[float]], k: int, fps: float, start_frame: int, end_frame: int, duration: float
) -> tuple[list[int], dict[str, Any]]:
    """``top_window_uniform``: ``k`` native frames by the midpoint rule inside the best non-empty window.

    ``windows`` are ``[st, ed, score]`` in seconds relative to ``start_frame`` (any order; ranked by score,
    ties -> earlier in the list). Each window is clamped to ``[0, duration]`` and covers native frames
    ``[ceil(st * fps), ceil(ed * fps))``. Returns frames (ascending) and a record: ``window`` (clamped),
    ``window_raw``, ``window_rank``, ``skipped`` (empty windows passed over), ``padded``, ``fallback``.
    """
    order = sorted(range(len(windows)), key=lambda i: (-float(windows[i][2]), i))
    skipped = 0
    for rank, i in enumerate(order):
        st, ed, score = (float(x) for x in windows[i][:3])
        cst, ced = max(0.0, st), min(duration, ed)
        a = int(start_frame) + math.ceil(cst * fps - 1e-6)
        b = min(int(start_frame) + math.ceil(ced * fps - 1e-6), int(end_frame))
        if ced <= cst or b <= a:
            skipped += 1
            continue
        n = min(k, b - a)
        frames = midpoint_indices(a, b, n)
        padded = n < k
        frames += [frames[-1]] * (k - n)
        info = {
            "window": [round(cst, 4), round(ced, 4), score],
            "window_raw": [st, ed, score],
            "window_rank": rank,
            "window_frames": [a, b],
            "skipped": skipped,
            "padded": padded,
            "fallback": None,
        }
        return sorted(frames), info
    n = min(k, int(end_frame) - int(start_frame))
    frames = midpoint_indices(int(start_frame), int(end_frame), n)
    padded = n < k
    frames += [frames[-1]] * (k - n)
    return sorted(frames), {
        "window": None,
        "window_raw": None,
        "window_rank": None,
        "skipped": skipped,
        "padded": padded,
        "fallback": "whole_segment",
    }


def frames_topk_saliency(
    saliency: Sequence[float],
    clip_centres: Sequence[float],
    k: int,
    fps: float,
    start_frame: int,
    end_frame: int,
    duration: float,
    clip_len: float = CLIP_LEN,
) -> tuple[list[int], list[float], dict[str, Any]]:
    """``topk_saliency``: frames at the centres of the ``k`` highest-saliency clips (ties -> lower clip).

    Clips starting at or after ``duration`` are excluded; frame = ``start_frame + round(centre * fps)``
    clamped to ``[start_frame, end_frame - 1]``. Returns frames and their saliencies (both sorted by time)
    and a record with ``clips`` (positions in ``saliency``), ``padded``.
    """
    valid = [c for c in range(len(saliency)) if clip_centres[c] - clip_len / 2 < duration - 1e-9]
    chosen = sorted(valid, key=lambda c: (-float(saliency[c]), c))[:k]
    pairs = []
    for c in chosen:
        f = int(start_frame) + int(math.floor(clip_centres[c] * fps + 0.5))
        pairs.append((min(max(f, int(start_frame)), int(end_frame) - 1), float(saliency[c]), c))
    pairs.sort()
    padded = len(pairs) < k
    if not pairs:
        raise InputError("no clip of the segment lies inside the video")
    pairs += [pairs[-1]] * (k - len(pairs))
    return (
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        {
            "clips": [p[2] for p in pairs],
            "clip_centres": [clip_centres[p[2]] for p in pairs],
            "padded": padded,
        },
    )


def snap_to_candidates(
    frames: Sequence[int], candidates: Sequence[int]
) -> tuple[list[int], list[int], list[int]]:
    """Move each frame (in the given order) to the nearest unused candidate (ties -> earlier candidate); when
    every candidate is used the nearest one is reused.

    Returns ``(frames, candidate positions, source)`` sorted by time, where ``source[i]`` is the index in
    ``frames`` that produced output ``i``.
    """
    if not candidates:
        raise InputError("no candidate frames to snap to")
    used: set[int] = set()
    out = []
    for src, f in enumerate(frames):
        order = sorted(range(len(candidates)), key=lambda p: (abs(int(candidates[p]) - int(f)), p))
        pos = next((p for p in order if p not in used), order[0])
        used.add(pos)
        out.append((int(candidates[pos]), pos, src))
    out.sort()
    return [f for f, _, _ in out], [p for _, p, _ in out], [s for _, _, s in out]


# ==========================================================================================================
# selector


def _check_choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise InputError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


@register
class MomentDETRSelector(Selector):
    """Keyframes from Moment-DETR's best window or highest-saliency clips (``selectors.md`` §4-5).

    Args:
        checkpoint: Moment-DETR checkpoint path (``.ckpt`` or ``.safetensors``; required unless ``model``).
        model: an already-built :class:`MomentDETR` (tests, reuse).
        opt: architecture options overriding those stored with the checkpoint.
        clip_model: a ``CLIPModel`` or a model id / folder (default ``openai/clip-vit-base-patch32``, lazy).
        clip_tokenizer: tokenizer for ``clip_model`` (required when ``clip_model`` is an object).
        text_mode: ``question_only`` (default) | ``question_options`` (truncated at 32 tokens).
        frame_strategy: ``top_window_uniform`` (default) | ``topk_saliency``.
        long_video: ``sliding`` (default) | ``stride`` | ``refuse``.
        snap_to_candidates: snap frames to the nearest unused SeViLA candidates (default False).
        trusted: allow ``weights_only=False`` for pickled checkpoints (the official one needs it).
        device: torch device for both models.
        feature_cache: optional dict to reuse video features across selectors / settings.
    """

    name = "moment_detr"
    description = (
        "Frames from the best Moment-DETR moment window (or top saliency clips), CLIP-only checkpoint."
    )

    @classmethod
    def from_runtime(cls, runtime: Any = None, **options: Any) -> MomentDETRSelector:
        """Build for a SeViLA runtime. With random-weight (``tiny-random``) runtimes and no checkpoint, a tiny
        random Moment-DETR with the real key names over a tiny random CLIP is used (offline); otherwise the
        ``checkpoint`` option (the official ``model_best.ckpt``) is required."""
        if runtime is not None:
            options.setdefault("device", runtime.device)
            if runtime.random_weights and options.get("checkpoint") is None and options.get("model") is None:
                from sevila_tools.selectors.clip import build_tiny_clip

                clip_model, clip_tok, _ = build_tiny_clip()
                options.update(
                    model=build_tiny_moment_detr(clip_model.config.projection_dim,
                                                 clip_model.config.text_config.hidden_size),
                    clip_model=clip_model, clip_tokenizer=clip_tok,
                )
        if options.get("checkpoint") is None and options.get("model") is None:
            raise InputError("the moment_detr selector needs a checkpoint: pass --mdetr-checkpoint PATH "
                             "(the official run_on_video/moment_detr_ckpt/model_best.ckpt)")
        return cls(**options)

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        model: MomentDETR | None = None,
        opt: Any = None,
        clip_model: Any | str | None = None,
        clip_tokenizer: Any | None = None,
        text_mode: str = "question_only",
        frame_strategy: str = "top_window_uniform",
        long_video: str = DEFAULT_LONG_VIDEO,
        snap_to_candidates: bool = False,
        trusted: bool = False,
        device: str | torch.device = "cpu",
        clip_batch_size: int = 60,
        feature_cache: dict | None = None,
    ) -> None:
        self.text_mode = _check_choice(text_mode, TEXT_MODES, "moment_detr text_mode")
        self.frame_strategy = _check_choice(frame_strategy, FRAME_STRATEGIES, "moment_detr frame_strategy")
        self.long_video = _check_choice(long_video, LONG_VIDEO_RULES, "moment_detr long_video rule")
        self.snap = bool(snap_to_candidates)
        self.trusted = bool(trusted)
        self.device = torch.device(device)
        self.clip_batch_size = int(clip_batch_size)
        self.feature_cache = feature_cache
        self._opt = opt
        if model is None:
            if checkpoint is None:
                raise InputError(
                    "the moment_detr selector needs a checkpoint path (moment_detr.checkpoint); "
                    "nothing is downloaded"
                )
            if not Path(checkpoint).is_file():
                raise CheckpointError(f"Moment-DETR checkpoint not found: {checkpoint}")
            self.checkpoint: str | None = str(checkpoint)
            self._model: MomentDETR | None = None
        else:
            self.checkpoint = None if checkpoint is None else str(checkpoint)
            self._model = model.to(self.device).eval()
        from sevila_tools.selectors.clip import DEFAULT_CLIP_MODEL

        if clip_model is None or isinstance(clip_model, (str, Path)):
            self.clip_name = str(clip_model or DEFAULT_CLIP_MODEL)
            self._clip = None
        else:
            if clip_tokenizer is None:
                raise InputError("MomentDETRSelector: pass the tokenizer that matches the given CLIP model")
            self.clip_name = str(getattr(clip_model.config, "_name_or_path", "") or type(clip_model).__name__)
            self._clip = clip_model.to(self.device).eval()
        self._clip_tokenizer = clip_tokenizer

    # -- lazy models --------------------------------------------------------------------------------------
    @property
    def model(self) -> MomentDETR:
        """The Moment-DETR model (loaded from ``checkpoint`` on first use)."""
        if self._model is None:
            assert self.checkpoint is not None
            self._model = load_moment_detr(
                self.checkpoint, trusted=self.trusted, opt=self._opt, device=self.device
            )
        return self._model

    @property
    def clip(self) -> Any:
        """The CLIP model used for features (loaded on first use when an id was given)."""
        if self._clip is None:
            from sevila_tools.selectors.clip import load_clip

            self._clip, tok = load_clip(self.clip_name, self.device)
            if self._clip_tokenizer is None:
                self._clip_tokenizer = tok
        return self._clip

    @property
    def clip_tokenizer(self) -> Any:
        """The CLIP tokenizer."""
        if self._clip_tokenizer is None:
            _ = self.clip
        return self._clip_tokenizer

    def config(self) -> dict[str, Any]:
        """Selector configuration recorded with every selection."""
        return {
            "checkpoint": self.checkpoint,
            "clip_model": self.clip_name,
            "text_mode": self.text_mode,
            "frame_strategy": self.frame_strategy,
            "long_video": self.long_video,
            "snap_to_candidates": self.snap,
        }

    # -- features -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def image_features(self, frames: np.ndarray) -> Tensor:
        """Native-resolution uint8 frames ``(T, H, W, 3)`` -> normalised projected CLIP embeddings."""
        from sevila_tools.selectors.clip import clip_pixel_values, embedding_tensor

        clip = self.clip
        size = int(getattr(clip.config.vision_config, "image_size", 224) or 224)
        dtype = next(clip.parameters()).dtype
        outs = []
        for i in range(0, len(frames), self.clip_batch_size):
            px = clip_pixel_values(frames[i : i + self.clip_batch_size], size=size, std_eps=1e-8)
            outs.append(
                embedding_tensor(clip.get_image_features(pixel_values=px.to(self.device, dtype)))
                .float()
                .cpu()
            )
        return F.normalize(torch.cat(outs), dim=-1, eps=1e-5)

    def segment_grid(self, inp: SelectorInput) -> ClipGrid:
        """The 2-s clip grid of the segment (the candidates' ``[edges[0], edges[-1])`` native frames)."""
        cand = inp.candidates
        fps = float(cand.fps)
        nvf = int(cand.num_video_frames)
        if len(cand.edges) > 0:
            start, end = int(cand.edges[0]), int(cand.edges[-1])
        else:
            start = 0 if inp.start is None else int(inp.start * fps)
            end = nvf if inp.end is None else int(inp.end * fps)
        start = min(max(start, 0), nvf - 1)
        end = min(end, nvf)
        if end <= start:  # window shorter than one frame: that one frame, as SeViLA's sampler does
            end = start + 1
        return clip_grid(start, end, fps)

    def video_features(self, inp: SelectorInput) -> tuple[Tensor, ClipGrid]:
        """Normalised CLIP features ``(T, D)`` of the segment's clips (TEF not appended) and the clip grid."""
        grid = self.segment_grid(inp)
        key = None
        if self.feature_cache is not None:
            key = (
                "moment_detr",
                self.clip_name,
                id(self.clip),
                str(inp.video),
                grid.start_frame,
                grid.end_frame,
            )
            if key in self.feature_cache:
                return self.feature_cache[key], grid
        from sevila_tools.video import read_frames

        frames, _ = read_frames(inp.video, grid.frame_indices, decoder=inp.candidates.decoder, size=None)
        feats = self.image_features(frames)
        if key is not None:
            self.feature_cache[key] = feats
        return feats, grid

    def query_text(self, question: str, options: Sequence[str] = ()) -> str:
        """The text sent to Moment-DETR for ``text_mode``."""
        if self.text_mode == "question_options" and options:
            return " ".join([question, *options])
        return question

    @torch.no_grad()
    def query_features(self, text: str) -> tuple[Tensor, dict[str, Any]]:
        """CLIP text token states for Moment-DETR: <= 32 tokens (BOS/EOS kept), final-LayerNorm output (not
        projected), sliced to the valid length, L2-normalised per token.

        Returns ``(L, D_txt)`` and a record.
        """
        if not text or not text.strip():
            raise InputError("the question is empty")
        tok = self.clip_tokenizer
        n_full = len(tok(text, truncation=False, verbose=False).input_ids)
        enc = tok([text], truncation=True, max_length=MAX_QUERY_TOKENS, return_tensors="pt")
        n_valid = int(enc["attention_mask"][0].sum())
        clip = self.clip
        text_model = getattr(clip, "text_model", clip)
        hidden = text_model(
            input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device)
        ).last_hidden_state
        feats = F.normalize(hidden[0, :n_valid].float().cpu(), dim=-1, eps=1e-5)
        return feats, {
            "query": text,
            "query_tokens": n_valid,
            "query_tokens_full": n_full,
            "query_truncated": n_full > MAX_QUERY_TOKENS,
        }

    # -- selection ----------------------------------------------------------------------------------------
    def predict(self, inp: SelectorInput) -> tuple[MomentDETRPrediction, ClipGrid, dict[str, Any]]:
        """Run the full pipeline on ``inp``: (prediction, clip grid, query record)."""
        feats, grid = self.video_features(inp)
        qfeats, qinfo = self.query_features(self.query_text(inp.question, inp.options))
        model = self.model
        if qfeats.shape[1] != model.txt_dim:
            raise CheckpointError(
                f"Moment-DETR expects {model.txt_dim}-d text token states but the CLIP text tower "
                f"gives {qfeats.shape[1]}-d"
            )
        if feats.shape[1] + 2 != model.vid_dim:
            raise CheckpointError(
                f"Moment-DETR expects {model.vid_dim - 2}-d CLIP image embeddings (+2 TEF) but "
                f"CLIP gives {feats.shape[1]}-d"
            )
        pred = run_moment_detr(model, feats, qfeats, clip_len=grid.clip_len, long_video=self.long_video)
        return pred, grid, qinfo

    def select(self, inp: SelectorInput, k: int) -> Selection:
        """``k`` frames (sorted by time) by the configured frame strategy; the record keeps raw outputs."""
        if k < 1:
            raise InputError(f"k must be >= 1 (got {k})")
        pred, grid, qinfo = self.predict(inp)
        return self.selection_from_prediction(inp, k, pred, grid, qinfo)

    def selection_from_prediction(
        self,
        inp: SelectorInput,
        k: int,
        pred: MomentDETRPrediction,
        grid: ClipGrid,
        qinfo: dict[str, Any] | None = None,
    ) -> Selection:
        """Turn a prediction into a :class:`Selection` (strategy, snapping, record)."""
        cand = inp.candidates
        fps = grid.fps
        info: dict[str, Any]
        if self.frame_strategy == "top_window_uniform":
            frames, info = frames_top_window_uniform(
                pred.windows, k, fps, grid.start_frame, grid.end_frame, grid.duration
            )
            w = info["window"]
            scores = [None if w is None else float(w[2])] * k
        else:
            frames, sal, info = frames_topk_saliency(
                pred.saliency,
                pred.clip_centres,
                k,
                fps,
                grid.start_frame,
                grid.end_frame,
                grid.duration,
                clip_len=grid.clip_len,
            )
            scores = list(sal)
        cand_idx = [int(i) for i in cand.indices]
        if self.snap:
            info["unsnapped_frames"] = list(frames)
            frames, positions, source = snap_to_candidates(frames, cand_idx)
            scores = [scores[i] for i in source]
        else:
            positions = [cand_idx.index(f) if f in cand_idx else None for f in frames]
        extra = {
            "frame_strategy": self.frame_strategy,
            **info,
            "snap_to_candidates": self.snap,
            "long_video": self.long_video,
            "long_video_applied": pred.applied,
            "num_clips": pred.num_clips,
            "clip_len": pred.clip_len,
            "clip_frame_indices": grid.frame_indices,
            "segment_frames": [grid.start_frame, grid.end_frame],
            "duration": grid.duration,
            "text_mode": self.text_mode,
            **(qinfo or {}),
            "pred_relevant_windows": pred.windows,
            "pred_saliency_scores": pred.saliency,
            "saliency_clip_ids": pred.clip_ids,
            "raw": pred.raw,
        }
        return Selection(
            selector=self.name,
            config=self.config(),
            candidate_frame_indices=cand_idx,
            candidate_times=[float(t) for t in cand.timestamps],
            candidate_scores=None,
            frame_indices=[int(f) for f in frames],
            times=[float(f) / fps for f in frames],
            candidate_positions=positions,
            scores=scores,
            extra=extra,
        )
