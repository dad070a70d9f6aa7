"""The landmark transformer (paper §Landmark transformer): `model.py` the transformer and its
disentangler, `fit.py` fitting it on a dataset's landmarks, `config.py` the fitting settings
(importing it loads no torch). Import from the submodules."""
