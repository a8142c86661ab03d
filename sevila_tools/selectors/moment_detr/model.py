"""Moment-DETR (CLIP-only checkpoint layout): building blocks, the model, and builders from ``opt.json``
options. Layout facts: ``docs/selectors.md``."""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sevila_tools.errors import CheckpointError
from sevila_tools.selectors.moment_detr.transformer import Transformer

__all__ = [
    "DEFAULT_OPT",
    "LinearLayer",
    "MLP",
    "MomentDETR",
    "PositionEmbeddingSine",
    "TrainablePositionalEncoding",
    "build_moment_detr",
    "build_tiny_moment_detr",
    "resolve_opt",
]

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


def _input_projection(in_dim: int, hidden_dim: int, n: int, dropout: float) -> nn.Sequential:
    """``n`` LinearLayers from ``in_dim`` to ``hidden_dim``, ReLU after all but the last (of at most three)."""
    relu = [True] * 3
    relu[n - 1] = False
    return nn.Sequential(*[LinearLayer(in_dim if i == 0 else hidden_dim, hidden_dim, layer_norm=True,
                                       dropout=dropout, relu=relu[i]) for i in range(n)])


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
        self.input_txt_proj = _input_projection(txt_dim, hidden_dim, n_input_proj, input_dropout)
        self.input_vid_proj = _input_projection(vid_dim, hidden_dim, n_input_proj, input_dropout)
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


def options_dict(opt: Any) -> dict[str, Any]:
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
    d = {**DEFAULT_OPT, **options_dict(opt)}
    use_tef = "tef" in str(d["ctx_mode"])
    if "video" not in str(d["ctx_mode"]):
        raise CheckpointError(
            f"ctx_mode {d['ctx_mode']!r} has no video input; only video(+tef) models are supported"
        )
    if "use_tef" in options_dict(opt):  # training Namespace: v_feat_dim already includes the TEF
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
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's random numbers
        torch.manual_seed(seed)
        return build_moment_detr(opt)
