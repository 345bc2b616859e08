"""Shared fixtures: the real data folder, the offline model, a tiny random model, a workspace."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("XSTILTS_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
os.environ.setdefault("XSTILTS_DATA_DIR", str(DATA_DIR))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "MANIFEST.md").is_file():
        pytest.fail(f"real data folder not found at {DATA_DIR}; set XSTILTS_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def offline_model_dir() -> Path:
    from xstilts.config import Settings
    from xstilts.modeling.offline import prepare_offline_model

    return prepare_offline_model(Settings().cache_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, offline_model_dir: Path) -> Path:
    """A 2-layer, 32-wide random XLM-R with the real XLM-R tokenizer: fast, and it still learns."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    folder = tmp_path_factory.mktemp("models") / "tiny-xlmr"
    config = XLMRobertaConfig(
        vocab_size=250037,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    XLMRobertaModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(offline_model_dir).save_pretrained(folder)
    return folder


@pytest.fixture()
def settings(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, data_dir: Path
):
    """Settings of a fresh workspace in ``tmp_path``. ``data.path`` may name the real data folder
    or any folder a test builds under pytest's temporary root."""
    from xstilts.config import Settings

    return Settings(
        home=tmp_path,
        data_dir=data_dir,
        cache_dir=Settings().cache_dir,
        artifacts_dir=tmp_path / "artifacts",
        database_url=f"sqlite:///{tmp_path / 'xstilts.db'}",
        model_roots=(tiny_model_dir.parent,),
        data_roots=(data_dir, tmp_path_factory.getbasetemp()),
    )


def broken_mnli_folder(root: Path, data_dir: Path, label: str = "maybe") -> Path:
    """A data folder whose one MNLI training pair has an invalid ``label`` (the target stage fails
    while reading it) beside the real English XNLI dev file."""
    folder = root / "broken"
    (folder / "mnli").mkdir(parents=True)
    (folder / "xnli").mkdir()
    pair = {"0": {"text_a": "a", "text_b": "b", "label": label}}
    (folder / "mnli" / "train.json").write_text(json.dumps(pair))
    (folder / "xnli" / "dev-en.tsv").symlink_to(data_dir / "xnli" / "dev-en.tsv")
    return folder


def tiny_spec(model_dir: Path, **overrides: object) -> dict:
    """A spec for the tiny model on a few hundred real examples (seconds on a CPU)."""
    training = {
        "learning_rate": 1e-3,
        "batch_size": 16,
        "max_train_examples": 256,
        "max_seq_length": 64,
        "warmup_ratio": 0.1,
        "checkpoint_every_steps": 5,
    }
    spec: dict = {
        "name": "tiny",
        "model": {"source": f"local:{model_dir}"},
        "intermediate": {"tasks": ["qqp"], "training": training},
        "target": {"task": "xnli", "training": training},
        "evaluation": {
            "languages": ["en", "de", "ar"],
            "max_examples_per_language": 60,
            "max_seq_length": 64,
            "bootstrap_samples": 100,
        },
        "seeds": [1],
    }
    spec.update(overrides)
    return spec


@pytest.fixture()
def optimizer_steps() -> Iterator[list[int]]:
    """Counts every real optimiser step taken anywhere in the process."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    count = [0]

    def hook(*_: object) -> None:
        count[0] += 1

    handle = register_optimizer_step_post_hook(hook)
    yield count
    handle.remove()
