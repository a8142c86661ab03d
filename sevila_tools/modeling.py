"""The SeViLA network: a frozen ViT, a frozen Flan-T5 and two trainable Q-Former branches (Answerer, Localizer).

Built from Hugging Face BLIP-2 / T5 submodules that are called directly; module names, their LAVIS names and the
raw-feature rule: ``docs/method.md``, "Model parts and names".
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn
from transformers import Blip2Config, T5ForConditionalGeneration
from transformers.models.blip_2.modeling_blip_2 import Blip2QFormerModel, Blip2VisionModel

Branch = Literal["answerer", "localizer"]
BRANCHES: tuple[Branch, ...] = ("answerer", "localizer")

#: module-name prefixes of each trainable branch (state-dict keys start with one of these)
BRANCH_MODULES: dict[str, tuple[str, ...]] = {
    "answerer": ("ln_vision", "query_tokens", "qformer", "language_projection"),
    "localizer": ("ln_vision_loc", "query_tokens_loc", "qformer_loc", "language_projection_loc"),
}
FROZEN_MODULES = ("vision_model", "language_model")


def branch_of_key(key: str) -> str | None:
    """Which part a toolkit state-dict key belongs to: ``answerer``, ``localizer``, ``vision_model``,
    ``language_model`` or None."""
    head = key.split(".", 1)[0]
    for branch, mods in BRANCH_MODULES.items():
        if head in mods:
            return branch
    return head if head in FROZEN_MODULES else None


def prepare_config(config: Blip2Config) -> Blip2Config:
    """Apply SeViLA's fixed choices to a BLIP-2 config: T5 ``dense_act_fn="gelu"`` and untied T5 embeddings."""
    config = copy.deepcopy(config)
    config.text_config.tie_word_embeddings = False
    config.text_config.dense_act_fn = (
        "gelu"  # set after construction: "gated-gelu" would reset it to gelu_new
    )
    config.text_config.is_gated_act = True
    return config


class SevilaModel(nn.Module):
    """The SeViLA network. Holds parameters and tensor-level forward pieces; text handling lives in
    :class:`sevila_tools.runtime.SevilaRuntime`."""

    def __init__(self, config: Blip2Config) -> None:
        super().__init__()
        config = prepare_config(config)
        self.config = config
        vis_dim = config.vision_config.hidden_size
        qf_dim = config.qformer_config.hidden_size
        t5_dim = config.text_config.d_model
        nq = config.num_query_tokens
        self.num_query_tokens = nq

        self.vision_model = Blip2VisionModel(config.vision_config)
        self.language_model = T5ForConditionalGeneration(config.text_config)
        # T5 reads one shared input embedding in encoder and decoder; with tie_word_embeddings=False
        # (needed for Flan-T5's separate lm_head) transformers 5 builds three independent matrices, so tie here.
        self.language_model.encoder.embed_tokens = self.language_model.shared
        self.language_model.decoder.embed_tokens = self.language_model.shared
        # answerer branch
        self.ln_vision = nn.LayerNorm(vis_dim, eps=1e-5)
        self.query_tokens = nn.Parameter(torch.zeros(1, nq, qf_dim))
        self.qformer = Blip2QFormerModel(config.qformer_config)
        self.language_projection = nn.Linear(qf_dim, t5_dim)
        # localizer branch
        self.ln_vision_loc = nn.LayerNorm(vis_dim, eps=1e-5)
        self.query_tokens_loc = nn.Parameter(torch.zeros(1, nq, qf_dim))
        self.qformer_loc = Blip2QFormerModel(config.qformer_config)
        self.language_projection_loc = nn.Linear(qf_dim, t5_dim)
        if not any(p.is_meta for p in self.parameters()):
            std = config.qformer_config.initializer_range
            nn.init.normal_(self.query_tokens, std=std)
            nn.init.normal_(self.query_tokens_loc, std=std)

    # ------------------------------------------------------------------ parameters
    def branch_parameters(self, branch: str) -> dict[str, nn.Parameter]:
        """Named parameters of one part (``answerer``, ``localizer``, ``vision_model``, ``language_model``)."""
        return {n: p for n, p in self.named_parameters() if branch_of_key(n) == branch}

    def copy_answerer_to_localizer(self) -> None:
        """Initialise the localizer branch as a copy of the answerer (SeViLA's "Localizer without pre-training")."""
        with torch.no_grad():
            self.ln_vision_loc.load_state_dict(self.ln_vision.state_dict())
            self.query_tokens_loc.copy_(self.query_tokens)
            self.qformer_loc.load_state_dict(self.qformer.state_dict())
            self.language_projection_loc.load_state_dict(self.language_projection.state_dict())

    def freeze(self, trainable: tuple[str, ...] = ()) -> None:
        """Set ``requires_grad`` so only the named branches train; ViT and T5 are always frozen."""
        for name, p in self.named_parameters():
            p.requires_grad_(branch_of_key(name) in trainable)

    # ------------------------------------------------------------------ forward pieces
    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Raw ViT output of the last block, ``(N, 1 + patches, D)`` (no post-LayerNorm).

        The embeddings are assembled as LAVIS's EVA ViT does under fp16 autocast: the patch projection runs in
        the ViT dtype, but the CLS token and position embeddings stay fp32, so the residual stream is fp32
        (HF's ``Blip2VisionEmbeddings`` would cast them to the patch dtype). On CPU/fp32 both are identical.
        """
        emb = self.vision_model.embeddings
        patches = emb.patch_embedding(pixel_values.to(emb.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        cls = emb.class_embedding.expand(patches.shape[0], -1, -1)
        x = torch.cat([cls.float(), patches.float()], dim=1) + emb.position_embedding[:, : patches.shape[1] + 1].float()
        return self.vision_model.encoder(inputs_embeds=x).last_hidden_state

    def frame_queries(self, raw: torch.Tensor, branch: Branch) -> torch.Tensor:
        """Projected Q-Former outputs of one branch for raw ViT features: ``(N, 32, d_t5)`` float32."""
        if branch == "answerer":
            ln, qt, qf, proj = self.ln_vision, self.query_tokens, self.qformer, self.language_projection
        else:
            ln, qt, qf, proj = (
                self.ln_vision_loc,
                self.query_tokens_loc,
                self.qformer_loc,
                self.language_projection_loc,
            )
        feats = ln(raw.to(ln.weight.dtype))
        queries = qt.expand(feats.shape[0], -1, -1)
        out = qf(query_embeds=queries, encoder_hidden_states=feats).last_hidden_state[
            :, : self.num_query_tokens
        ]
        return proj(out.to(proj.weight.dtype)).float()

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """T5 input embeddings of token ids, as float32 (concatenated with the float32 query projections)."""
        return self.language_model.get_input_embeddings()(ids).float()
