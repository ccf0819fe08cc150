"""A small convolutional image classifier (fits the 8x8 scikit-learn digits by default).

``model(images) -> {"logits": Tensor[B, num_classes]}``; ``images`` is ``[B, C, H, W]``
(a ``[B, H, W]`` batch of single-channel images is accepted too).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from stoker.errors import UserError
from stoker.models.config import CNNConfig

__all__ = ["CNN", "CNNConfig"]


class CNN(nn.Module):
    """Conv blocks (3x3 conv, ReLU, 2x2 max-pool) -> MLP head."""

    def __init__(self, cfg: CNNConfig) -> None:
        super().__init__()
        self.config = cfg
        layers: list[nn.Module] = []
        size, ch = cfg.image_size, cfg.in_channels
        for out_ch in cfg.channels:
            layers += [nn.Conv2d(ch, out_ch, 3, padding=1), nn.ReLU()]
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(ch * size * size, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.num_classes),
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Kaiming-normal (fan-in, ReLU) weights and zero biases, from the global RNG."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        last = self.head[-1]
        assert isinstance(last, nn.Linear)
        nn.init.normal_(last.weight, 0.0, 1.0 / math.sqrt(last.in_features))

    def forward(self, images: Tensor) -> dict[str, Any]:
        cfg = self.config
        if images.dim() == 3 and cfg.in_channels == 1:
            images = images.unsqueeze(1)
        if images.dim() != 4 or images.shape[1:] != (cfg.in_channels, cfg.image_size,
                                                     cfg.image_size):
            raise UserError(
                f"CNN expects images of shape [B, {cfg.in_channels}, {cfg.image_size}, "
                f"{cfg.image_size}], got {list(images.shape)}; set model.image_size / "
                "model.in_channels to match the data"
            )
        return {"logits": self.head(self.features(images))}
