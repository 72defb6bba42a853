"""dsm_ref: a reference implementation of the Dynamic Spectrum Mixer (arXiv 2309.06721).

Modules flow one way: ``dct -> dswg -> mixers -> models -> (train, ablation, bench)``;
``viz`` and ``cli`` sit on top. See DESIGN.md for what is the paper's and what is ours.
"""

from . import dct, spectrum
from .models import create_model, list_models
from .utils import compare, environment_info, pick_device, sample_image, seed_everything

__version__ = "0.1.0"

__all__ = [
    "dct",
    "spectrum",
    "create_model",
    "list_models",
    "compare",
    "environment_info",
    "pick_device",
    "sample_image",
    "seed_everything",
]
