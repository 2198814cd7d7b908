"""torchvision's `ToTensor`, `Resize` and `Normalize` as SAM 2's image transforms use them
(`sam2/utils/transforms.py` scripts `Sequential(Resize((S, S)), Normalize(mean, std))`), for
the torchvision stand-in of tests/conftest.py: on tensors, torchvision's `Resize` is
`F.interpolate(mode="bilinear", align_corners=False, antialias=True)` and `Normalize` is
`(x - mean) / std` per channel; `ToTensor` turns an HxWxC uint8 array into CxHxW floats in
[0, 1] (other dtypes unscaled). Written to compile with `torch.jit.script`, as the original's do.
"""

from __future__ import annotations

import numpy as np
import torch


class ToTensor:
    def __call__(self, pic) -> torch.Tensor:
        array = np.asarray(pic)
        tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        return tensor.float().div(255) if array.dtype == np.uint8 else tensor


class Resize(torch.nn.Module):
    def __init__(self, size: list[int]) -> None:
        super().__init__()
        self.size = [int(s) for s in size]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(img.unsqueeze(0), size=self.size, mode="bilinear",
                                               align_corners=False, antialias=True).squeeze(0)


class Normalize(torch.nn.Module):
    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        return (tensor - self.mean) / self.std
