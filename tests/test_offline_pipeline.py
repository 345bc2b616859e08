"""One short run of the whole pipeline on the real offline model (the slow test of this suite)."""

from __future__ import annotations

import pytest
from xstilts.runtime.workspace import Workspace
from xstilts.spec import parse_spec


@pytest.mark.slow
def test_offline_model_learns_mnli_and_transfers(settings, offline_model_dir) -> None:
    training = {
        "learning_rate": 1e-4,
        "batch_size": 32,
        "max_train_examples": 1600,
        "max_seq_length": 96,
        "warmup_ratio": 0.1,
    }
    spec = parse_spec(
        {
            "name": "offline smoke",
            "model": {"pooling": "mean"},
            "target": {"task": "xnli", "training": training},
            "evaluation": {
                "languages": ["en", "de", "zh"],
                "max_examples_per_language": 200,
                "bootstrap_samples": 200,
            },
            "seeds": [3],
        }
    )
    result = Workspace(settings).run(spec)
    acc = {m.language: m.value for m in result.metrics}
    # 50 steps on 1600 MNLI examples. Chance is 1/3 and a 200-example set puts its 95% interval
    # at about +-0.065, so these floors are out of reach of a head that learned nothing. (Measured
    # on 2 CPU cores: en 0.52, de 0.515, zh 0.51.)
    assert acc["en"] > 0.45, acc
    assert acc["de"] > 0.42 and acc["zh"] > 0.42, acc
    assert result.summary is not None
    assert result.summary.transfer_gap == pytest.approx(acc["en"] - (acc["de"] + acc["zh"]) / 2)
