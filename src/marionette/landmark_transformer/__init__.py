"""The landmark transformer (paper §Landmark transformer): `model.py` the transformer and its
disentangler, `fit.py` fitting it on a dataset's landmarks, `config.py` the fitting settings."""

from marionette.landmark_transformer.config import MODES, LandmarkTransformerConfig
from marionette.landmark_transformer.model import DEFAULT_PATH, LandmarkTransformer

__all__ = ["DEFAULT_PATH", "MODES", "LandmarkTransformer", "LandmarkTransformerConfig"]
