"""Every setting is declared once, with its default, help line and rule, and `--help` prints them."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from marionette.config import SettingError, Settings, describe, override

MODULES = ("app", "data.config", "evaluation.config", "evaluation.expression", "inference.config",
           "landmark_transformer.config", "landmarks.crop", "model.config", "training.config")


def _settings_classes() -> list[type]:
    for name in MODULES:
        importlib.import_module(f"marionette.{name}")
    found, todo = [], list(Settings.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


def test_all_config_classes_are_found() -> None:
    names = {cls.__name__ for cls in _settings_classes()}
    assert {"AppConfig", "CropConfig", "EvalConfig", "ModelConfig", "PreprocessConfig", "ReenactConfig",
            "TrainConfig"} <= names
    assert len(names) >= 13


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda c: c.__name__)
def test_every_field_has_help_and_a_rule_and_its_default_passes(cls: type) -> None:
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help", "").strip(), f"{cls.__name__}.{f.name} has no help text"
        assert f.metadata.get("rule") is not None or isinstance(f.default, bool), f"{cls.__name__}.{f.name} has no rule"
    cls()  # every default passes its rule
    lines = describe(cls).splitlines()
    assert [line.split(" = ")[0].strip() for line in lines] == [f.name for f in dataclasses.fields(cls)]
    for line, f in zip(lines, dataclasses.fields(cls)):
        assert f.metadata["help"] in line and (f.metadata["rule"] is None or f"[{f.metadata['rule'].text}]" in line)


def test_a_value_breaking_its_rule_is_a_one_line_error() -> None:
    from marionette.landmarks.crop import CropConfig

    with pytest.raises(SettingError, match=r"^scale=9.0: must be in 1\.\.4$"):
        override(CropConfig(), ["scale=9"])
