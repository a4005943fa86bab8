"""The digits classifier that scores the reference models' samples: a multinomial logistic
regression on the [-1, 1]-scaled 8x8 digits (C = 0.5, lbfgs), trained by
``reference/train_reference.py`` and shipped as plain numbers in ``data/reference_classifier.json``,
evaluated with numpy (no scikit-learn at run time)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

CLASSIFIER = Path(__file__).with_name("data") / "reference_classifier.json"


class DigitClassifier:
    """The shipped digits classifier (logistic regression parameters in JSON, evaluated with numpy)."""

    def __init__(self, path: str | Path = CLASSIFIER):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"classifier parameters not found at {path}; run reference/train_reference.py")
        p = json.loads(path.read_text())
        self.coef = np.asarray(p["coef"], dtype=np.float64)
        self.intercept = np.asarray(p["intercept"], dtype=np.float64)
        self.classes = np.asarray(p["classes"])
        self.held_out_accuracy = p.get("held_out_accuracy")

    def predict(self, images: torch.Tensor) -> np.ndarray:
        x = images.detach().float().clamp(-1, 1).reshape(len(images), -1).double().cpu().numpy()
        return self.classes[(x @ self.coef.T + self.intercept).argmax(1)]

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        return float((self.predict(images) == labels.cpu().numpy()).mean())
