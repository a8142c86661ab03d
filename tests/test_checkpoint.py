"""LAVIS/SeViLA checkpoint conversion with strict checks, merge rules, HF BLIP-2 base and `convert` round trip.

The synthetic LAVIS state dict is written from the official key patterns (docs/method.md, "Checkpoints"; at
tiny size), not from the converter, so a wrong mapping rule fails here.
"""

import argparse

import pytest
import torch
from training_support import tiny_blip2_folder

from sevila_tools.checkpoint import load_sevila_checkpoint
from sevila_tools.errors import CheckpointError, ModelLoadError
from sevila_tools.loading import load_runtime, save_converted
from sevila_tools.tiny import tiny_config, tiny_model

CFG = tiny_config()
H = CFG.qformer_config.hidden_size  # 64 (768 real)
V = CFG.vision_config.hidden_size  # 64 (1408 real)
I = CFG.qformer_config.intermediate_size  # noqa: E741
T5 = CFG.text_config.d_model
LAYERS = CFG.qformer_config.num_hidden_layers
NQ = CFG.num_query_tokens


def lavis_branch(suffix: str, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """One SeViLA branch in LAVIS naming (``suffix`` is '' or '_loc')."""
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    qf = f"Qformer{suffix}.bert"
    sd = {
        f"ln_vision{suffix}.weight": r(V),
        f"ln_vision{suffix}.bias": r(V),
        f"query_tokens{suffix}": r(1, NQ, H),
        f"t5_proj{suffix}.weight": r(T5, H),
        f"t5_proj{suffix}.bias": r(T5),
        f"{qf}.embeddings.LayerNorm.weight": r(H),
        f"{qf}.embeddings.LayerNorm.bias": r(H),
        f"{qf}.embeddings.position_ids": torch.arange(512)[None],
    }
    for i in range(LAYERS):
        p = f"{qf}.encoder.layer.{i}"
        for kind, kv_dim in (("attention", H),) + ((("crossattention", V),) if i % 2 == 0 else ()):
            sd[f"{p}.{kind}.self.query.weight"] = r(H, H)
            sd[f"{p}.{kind}.self.query.bias"] = r(H)
            for kv in ("key", "value"):
                sd[f"{p}.{kind}.self.{kv}.weight"] = r(H, kv_dim)
                sd[f"{p}.{kind}.self.{kv}.bias"] = r(H)
            sd[f"{p}.{kind}.output.dense.weight"] = r(H, H)
            sd[f"{p}.{kind}.output.dense.bias"] = r(H)
            sd[f"{p}.{kind}.output.LayerNorm.weight"] = r(H)
            sd[f"{p}.{kind}.output.LayerNorm.bias"] = r(H)
        sd[f"{p}.intermediate_query.dense.weight"] = r(I, H)
        sd[f"{p}.intermediate_query.dense.bias"] = r(I)
        sd[f"{p}.output_query.dense.weight"] = r(H, I)
        sd[f"{p}.output_query.dense.bias"] = r(H)
        sd[f"{p}.output_query.LayerNorm.weight"] = r(H)
        sd[f"{p}.output_query.LayerNorm.bias"] = r(H)
    return sd


def save(tmp_path, sd, name="ckpt.pth", wrap=True):
    path = tmp_path / name
    torch.save({"model": sd, "epoch": 3} if wrap else sd, path)
    return path


def check_branch_equal(model, lavis, suffix, target=None):
    """Toolkit branch ``target`` (default: the same branch as ``suffix``) equals LAVIS branch ``suffix``."""
    tk = ("_loc" if suffix else "") if target is None else target
    assert torch.equal(model.state_dict()[f"ln_vision{tk}.weight"], lavis[f"ln_vision{suffix}.weight"])
    assert torch.equal(getattr(model, f"query_tokens{tk}"), lavis[f"query_tokens{suffix}"])
    assert torch.equal(
        model.state_dict()[f"language_projection{tk}.weight"], lavis[f"t5_proj{suffix}.weight"]
    )
    q = f"qformer{tk}"
    lq = f"Qformer{suffix}.bert"
    own = model.state_dict()
    assert torch.equal(own[f"{q}.layernorm.bias"], lavis[f"{lq}.embeddings.LayerNorm.bias"])
    assert torch.equal(
        own[f"{q}.encoder.layer.0.crossattention.attention.key.weight"],
        lavis[f"{lq}.encoder.layer.0.crossattention.self.key.weight"],
    )
    assert torch.equal(
        own[f"{q}.encoder.layer.1.attention.attention.value.bias"],
        lavis[f"{lq}.encoder.layer.1.attention.self.value.bias"],
    )
    assert torch.equal(
        own[f"{q}.encoder.layer.1.output_query.LayerNorm.weight"],
        lavis[f"{lq}.encoder.layer.1.output_query.LayerNorm.weight"],
    )


def test_full_sevila_checkpoint_both_branches(tmp_path):
    g = torch.Generator().manual_seed(1)
    lavis = {**lavis_branch("", g), **lavis_branch("_loc", g)}
    model = tiny_model()
    vit_before = model.vision_model.embeddings.patch_embedding.weight.clone()
    report = load_sevila_checkpoint(model, save(tmp_path, lavis))
    check_branch_equal(model, lavis, "")
    check_branch_equal(model, lavis, "_loc")
    assert report.dropped == {"position_ids buffer": 2}
    assert report.sources["answerer"].startswith("checkpoint") and report.sources["localizer"].startswith(
        "checkpoint"
    )
    assert torch.equal(model.vision_model.embeddings.patch_embedding.weight, vit_before)


def test_localizer_only_checkpoint_merges_with_base_answerer(tmp_path):
    g = torch.Generator().manual_seed(2)
    lavis = lavis_branch("_loc", g)
    model = tiny_model()
    answerer_before = {k: v.clone() for k, v in model.branch_parameters("answerer").items()}
    report = load_sevila_checkpoint(
        model, save(tmp_path, lavis, wrap=False), base_sources={"answerer": "base"}
    )
    check_branch_equal(model, lavis, "_loc")
    for k, v in model.branch_parameters("answerer").items():
        assert torch.equal(v, answerer_before[k])
    assert report.sources["answerer"] == "base"


def test_answerer_only_checkpoint_copies_into_localizer(tmp_path):
    lavis = lavis_branch("", torch.Generator().manual_seed(3))
    model = tiny_model()
    report = load_sevila_checkpoint(model, save(tmp_path, lavis))
    check_branch_equal(model, lavis, "")
    check_branch_equal(model, lavis, "", target="_loc")  # localizer = copy of the loaded answerer
    assert "copy" in report.sources["localizer"]


def test_full_lavis_state_dict_with_vit_qkv_bias(tmp_path):
    g = torch.Generator().manual_seed(4)
    lavis = {**lavis_branch("", g), **lavis_branch("_loc", g)}
    model = tiny_model()
    own = model.state_dict()
    vit = {
        "visual_encoder.cls_token": torch.randn(1, 1, V, generator=g),
        "visual_encoder.pos_embed": torch.randn(1, 257, V, generator=g),
        "visual_encoder.patch_embed.proj.weight": torch.randn(V, 3, 14, 14, generator=g),
        "visual_encoder.patch_embed.proj.bias": torch.randn(V, generator=g),
    }
    for i in range(CFG.vision_config.num_hidden_layers):
        b = f"visual_encoder.blocks.{i}"
        vit.update(
            {
                f"{b}.norm1.weight": torch.randn(V, generator=g),
                f"{b}.norm1.bias": torch.randn(V, generator=g),
                f"{b}.norm2.weight": torch.randn(V, generator=g),
                f"{b}.norm2.bias": torch.randn(V, generator=g),
                f"{b}.attn.qkv.weight": torch.randn(3 * V, V, generator=g),
                f"{b}.attn.q_bias": torch.randn(V, generator=g),
                f"{b}.attn.v_bias": torch.randn(V, generator=g),
                f"{b}.attn.proj.weight": torch.randn(V, V, generator=g),
                f"{b}.attn.proj.bias": torch.randn(V, generator=g),
                f"{b}.mlp.fc1.weight": torch.randn(CFG.vision_config.intermediate_size, V, generator=g),
                f"{b}.mlp.fc1.bias": torch.randn(CFG.vision_config.intermediate_size, generator=g),
                f"{b}.mlp.fc2.weight": torch.randn(V, CFG.vision_config.intermediate_size, generator=g),
                f"{b}.mlp.fc2.bias": torch.randn(V, generator=g),
            }
        )
    t5 = {
        "t5_model." + k[len("language_model.") :]: torch.randn_like(v)
        for k, v in own.items()
        if k.startswith("language_model.") and "embed_tokens" not in k
    }
    load_sevila_checkpoint(model, save(tmp_path, {**lavis, **vit, **t5}))
    own = model.state_dict()
    q, v = vit["visual_encoder.blocks.1.attn.q_bias"], vit["visual_encoder.blocks.1.attn.v_bias"]
    assert torch.equal(
        own["vision_model.encoder.layers.1.self_attn.qkv.bias"], torch.cat([q, torch.zeros_like(v), v])
    )
    assert torch.equal(own["vision_model.embeddings.class_embedding"], vit["visual_encoder.cls_token"])
    assert torch.equal(own["language_model.shared.weight"], t5["t5_model.shared.weight"])
    assert torch.equal(own["language_model.lm_head.weight"], t5["t5_model.lm_head.weight"])
    assert not torch.equal(own["language_model.lm_head.weight"], own["language_model.shared.weight"])
    # T5 input embeddings stay tied: encoder/decoder read `shared`
    assert model.language_model.encoder.embed_tokens is model.language_model.shared


def test_missing_key_named_in_error(tmp_path):
    lavis = lavis_branch("", torch.Generator().manual_seed(5))
    del lavis["Qformer.bert.encoder.layer.1.output_query.dense.weight"]
    with pytest.raises(
        CheckpointError, match=r"answerer part is incomplete.*qformer\.encoder\.layer\.1\.output_query"
    ):
        load_sevila_checkpoint(tiny_model(), save(tmp_path, lavis))


def test_unexpected_key_named_in_error(tmp_path):
    lavis = lavis_branch("", torch.Generator().manual_seed(6))
    lavis["Qformer_localizer.weird.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="Qformer_localizer.weird.weight"):
        load_sevila_checkpoint(tiny_model(), save(tmp_path, lavis))


def test_shape_mismatch_named(tmp_path):
    lavis = lavis_branch("", torch.Generator().manual_seed(7))
    lavis["t5_proj.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match=r"language_projection\.weight \(3, 3\)"):
        load_sevila_checkpoint(tiny_model(), save(tmp_path, lavis))


def test_pickled_objects_refused_unless_trusted(tmp_path):
    lavis = lavis_branch("", torch.Generator().manual_seed(8))
    path = tmp_path / "pickled.pth"
    torch.save({"model": lavis, "opt": argparse.Namespace(lr=1)}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_sevila_checkpoint(tiny_model(), path)
    load_sevila_checkpoint(tiny_model(), path, trusted=True)


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_sevila_checkpoint(tiny_model(), tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="directory"):
        load_sevila_checkpoint(tiny_model(), tmp_path)


def test_hf_blip2_folder_as_base(tmp_path):
    """A BLIP-2 folder in HF format: answerer = its Q-Former, ln_vision = its post_layernorm with eps 1e-5,
    localizer = copy of the answerer (no SeViLA weights given)."""
    hf = tiny_blip2_folder(tmp_path / "blip2", seed=0)
    rt = load_runtime(str(tmp_path / "blip2"), checkpoint="none", device="cpu")
    m = rt.model
    assert torch.equal(m.ln_vision.weight, hf.vision_model.post_layernorm.weight)
    assert m.ln_vision.eps == 1e-5
    assert torch.equal(m.query_tokens, hf.query_tokens)
    assert torch.equal(
        m.qformer_loc.encoder.layer[0].crossattention.attention.key.weight,
        hf.qformer.encoder.layer[0].crossattention.attention.key.weight,
    )
    assert m.qformer_loc is not m.qformer
    assert torch.equal(m.language_model.lm_head.weight, hf.language_model.lm_head.weight)
    assert rt.info["sources"]["localizer"].startswith("copy of answerer")
    assert not rt.random_weights


def test_unknown_model_id_offline_is_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="offline"):
        load_runtime("nobody/not-a-model", checkpoint="none", device="cpu")


def test_convert_round_trip_is_exact(tmp_path, tiny_runtime):
    folder = save_converted(tiny_runtime, tiny_runtime.tokenizer, tmp_path / "conv")
    assert {"model.safetensors", "sevila_config.json", "tokenizer_config.json"} <= {
        p.name for p in folder.iterdir()
    }
    rt2 = load_runtime(str(folder), device="cpu")
    for (k, a), (k2, b) in zip(
        tiny_runtime.model.state_dict().items(), rt2.model.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b), k
    assert rt2.random_weights and rt2.ids == tiny_runtime.ids
    assert rt2.model.language_model.encoder.embed_tokens is rt2.model.language_model.shared


def test_a_file_that_is_not_a_checkpoint_says_so_without_trust_advice(tmp_path):
    """A JSON file passed as a checkpoint: one line saying what it is not, with or without trust."""
    from sevila_tools.checkpoint import read_state_dict
    from sevila_tools.errors import CheckpointError

    bad = tmp_path / "notes.pth"
    bad.write_text('{"hello": 1}')
    for trusted in (False, True):
        with pytest.raises(CheckpointError, match="is not a checkpoint") as err:
            read_state_dict(bad, trusted=trusted)
        assert "--trust-checkpoint" not in str(err.value) and "\n" not in str(err.value)
