"""Model presets and overrides."""

from __future__ import annotations

import pytest

from marionette.config import from_dict, to_dict
from marionette.model.config import PRESETS, ModelConfig, model_config


def test_presets_list_only_differences_and_keep_their_sizes() -> None:
    default = ModelConfig()
    for name, changes in PRESETS.items():
        assert all(getattr(default, key) != value for key, value in changes.items()), name
    assert model_config("paper") == default
    assert [model_config(n).image_size for n in ("paper", "cpu", "tiny")] == [256, 128, 64]
    paper = model_config("paper")
    assert [paper.width(level) for level in range(6)] == [64, 128, 256, 512, 512, 512]  # method.md


def test_overrides_and_errors() -> None:
    assert model_config("tiny", ["attention_blocks=1", "flow_max=0.5"]).attention_blocks == 1
    with pytest.raises(ValueError, match="unknown model preset"):
        model_config("huge")
    with pytest.raises(ValueError, match="unknown ModelConfig setting"):
        model_config("tiny", ["width=3"])
    with pytest.raises(ValueError, match="multiple of 32"):
        model_config("tiny", ["image_size=80"])
    with pytest.raises(ValueError, match="attention_heads"):
        model_config("tiny", ["attention_heads=3"])
    config = model_config("cpu")
    assert from_dict(ModelConfig, to_dict(config)) == config
