"""Random-init XLM-R encoders the benchmarks build from a config, saved with a real tokenizer.

``xlmr-tiny`` is the test suite's model (tests/conftest.py: 2 layers, width 32, seed 0, the XLM-R
vocabulary of 250,037 rows); ``xlmr-large`` is the paper's encoder shape (24 layers, width 1024).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    "xlmr-tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "intermediate_size": 64},
    "xlmr-large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                   "intermediate_size": 4096},
}  # fmt: skip


def save_random_xlmr(
    folder: Path, tokenizer: Path | str, shape: str = "xlmr-tiny", vocab_size: int = 250037
) -> Path:
    """An XLM-R of ``shape`` initialised with seed 0, saved to ``folder`` with ``tokenizer``'s files."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    config = XLMRobertaConfig(
        vocab_size=vocab_size, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
        bos_token_id=0, eos_token_id=2, **SHAPES[shape],
    )  # fmt: skip
    torch.manual_seed(0)
    XLMRobertaModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer).save_pretrained(folder)
    return folder
