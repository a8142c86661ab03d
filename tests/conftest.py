"""Shared pytest fixtures.

Tests run offline (``HF_HUB_OFFLINE=1``) on tiny random-weight models and synthetic videos. Real public annotation
files live in ``tests/data`` (sources and licences in ``tests/data/README.md``); the ``real_data`` fixture gives them
under their published names.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

pytest.register_assert_rewrite("training_support")  # its helpers assert, and several test modules import it
import suite_order  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "tests" / "data"
_PACKED = (".jsonl.gz", ".json.gz", ".csv.gz")
_SEED = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--shuffle",
        metavar="SEED",
        default=None,
        help="run test files and the tests inside them in a seeded order; 'random' draws (and prints) a seed",
    )


def pytest_configure(config: pytest.Config) -> None:
    value = config.getoption("--shuffle")
    if value is not None:
        try:
            config.stash[_SEED] = suite_order.parse_seed(value)
        except ValueError as e:
            raise pytest.UsageError(str(e)) from None


def _shuffle_line(config: pytest.Config) -> str | None:
    seed = config.stash.get(_SEED, None)
    return None if seed is None else f"shuffled order: repeat it with --shuffle={seed}"


def pytest_report_header(config: pytest.Config) -> str | None:
    return _shuffle_line(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seed = config.stash.get(_SEED, None)
    if seed is not None:
        suite_order.reorder(items, [item.nodeid for item in items], seed)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    line = _shuffle_line(config)
    if line:
        terminalreporter.write_line(line)


@pytest.fixture
def one_thread():
    """Run the test with one torch thread (tiny models are faster so, and the machine is shared); restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``tests/data`` as stored (some files gzip-compressed)."""
    return DATA_DIR


@pytest.fixture(scope="session")
def real_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``tests/data`` under the published file names (``.jsonl.gz`` etc. unpacked)."""
    out = tmp_path_factory.mktemp("real_data")
    for src in sorted(DATA_DIR.rglob("*")):
        if not src.is_file():
            continue
        rel = src.relative_to(DATA_DIR)
        packed = src.name.endswith(_PACKED)
        dst = out / (rel.with_suffix("") if packed else rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(gzip.decompress(src.read_bytes()) if packed else src.read_bytes())
    return out


@pytest.fixture(scope="session")
def tiny_runtime():
    """The seeded tiny random SeViLA runtime on CPU (shared by the whole session; never mutate it)."""
    from sevila_tools.loading import load_runtime

    return load_runtime("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def video_file(tmp_path_factory) -> Path:
    """A 3-s synthetic clip (90 frames at 30 fps, moving square + frame counter)."""
    from sevila_tools.synthetic import make_video

    return make_video(tmp_path_factory.mktemp("videos") / "clip.mp4", num_frames=90, fps=30)


@pytest.fixture(scope="session")
def real_bpe_clip(real_data: Path):
    """``(model, tokenizer)``: a seeded tiny random CLIP (width 32, projection 16) over the real CLIP BPE
    tokenizer's 49,408-token vocabulary (never mutate the model)."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    from sevila_tools.selectors.clip_models import clip_tokenizer_from_bpe

    tok = clip_tokenizer_from_bpe(real_data / "clip" / "bpe_simple_vocab_16e6.txt.gz")
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    text = CLIPTextConfig(vocab_size=49408, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, **small)
    vision = CLIPVisionConfig(image_size=224, patch_size=32, **small)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16))
    return model.eval(), tok


@pytest.fixture(scope="module")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The training tests' scene videos and annotations (``training_support.make_data``), one folder per module."""
    from training_support import make_data

    return make_data(tmp_path_factory.mktemp("train"))
