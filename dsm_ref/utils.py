"""Small helpers every notebook uses: seeding, device choice, the mine-vs-reference compare,
environment report, and the sample photographs that ship with matplotlib (no download).
"""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "seed_everything",
    "pick_device",
    "environment_info",
    "Comparison",
    "compare",
    "sample_image",
    "SAMPLE_IMAGES",
]


def seed_everything(seed: int = 0) -> None:
    """Seeds Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(prefer: str | None = None) -> torch.device:
    """``prefer`` if given, else CUDA, then MPS, then CPU."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def environment_info() -> dict[str, str]:
    """Versions and hardware, for notebook headers and result provenance."""
    import scipy

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
        "cpu_threads": str(torch.get_num_threads()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except Exception as err:  # torchvision is optional for most of the package
        info["torchvision"] = f"unavailable ({type(err).__name__})"
    return info


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare`; truthy when the two tensors agree."""

    name: str
    exact: bool
    close: bool
    max_abs_diff: float

    def __bool__(self) -> bool:
        return self.close

    def __str__(self) -> str:
        return (
            f"{self.name:<28} exact: {str(self.exact):<5} | close: {str(self.close):<5} | "
            f"max abs diff: {self.max_abs_diff:.1e}"
        )


def compare(
    name: str,
    mine: Tensor | np.ndarray,
    reference: Tensor | np.ndarray,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    verbose: bool = True,
) -> Comparison:
    """Checks a from-scratch result against a reference (nn-zero-to-hero's ``cmp``).

    Prints one line (exact / allclose / max abs diff) and returns a :class:`Comparison`, so a
    notebook can ``assert compare(...)``. Shapes must match exactly.
    """
    mine_t = torch.as_tensor(np.asarray(mine) if not isinstance(mine, Tensor) else mine)
    ref_t = torch.as_tensor(
        np.asarray(reference) if not isinstance(reference, Tensor) else reference
    )
    if mine_t.shape != ref_t.shape:
        raise ValueError(
            f"{name}: shapes differ, mine {tuple(mine_t.shape)} vs reference {tuple(ref_t.shape)}"
        )
    mine_t = mine_t.detach().cpu().to(torch.float64)
    ref_t = ref_t.detach().cpu().to(torch.float64)
    diff = (mine_t - ref_t).abs().max().item() if mine_t.numel() else 0.0
    result = Comparison(
        name=name,
        exact=bool(torch.equal(mine_t, ref_t)),
        close=bool(torch.allclose(mine_t, ref_t, rtol=rtol, atol=atol)),
        max_abs_diff=diff,
    )
    if verbose:
        print(result)
    return result


SAMPLE_IMAGES = {
    "grace_hopper": "grace_hopper.jpg",
}


def sample_image(
    name: str = "grace_hopper", *, size: int | None = None, gray: bool = True
) -> Tensor:
    """A real photograph shipped with matplotlib, as a float tensor in ``[0, 1]``.

    Returns ``(H, W)`` if ``gray`` else ``(3, H, W)``; ``size`` resizes the shorter side
    (antialiased) so that notebooks stay fast on a laptop CPU.
    """
    import matplotlib.image as mpimg
    from matplotlib import cbook

    if name not in SAMPLE_IMAGES:
        raise ValueError(f"unknown sample image {name!r}; expected one of {sorted(SAMPLE_IMAGES)}")
    path = cbook.get_sample_data(SAMPLE_IMAGES[name], asfileobj=False)
    if not os.path.exists(path):
        raise FileNotFoundError(f"matplotlib's sample data has no {path}")
    array = mpimg.imread(path)
    image = torch.as_tensor(np.array(array), dtype=torch.float32)
    if image.max() > 1.0:
        image = image / 255.0
    image = image[..., :3].permute(2, 0, 1)  # (3, H, W)
    if size is not None:
        scale = size / min(image.shape[-2:])
        new_hw = [max(1, round(s * scale)) for s in image.shape[-2:]]
        image = torch.nn.functional.interpolate(
            image[None], size=new_hw, mode="bilinear", antialias=True, align_corners=False
        )[0].clamp(0, 1)
    if gray:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        return (image * weights).sum(0)
    return image
