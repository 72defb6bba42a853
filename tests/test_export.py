"""Export at any size: an ONNX model exported once runs at other input sizes in onnxruntime.

``torch.onnx.export(dynamo=True)`` with dynamic batch, height and width: the DCT matrices, the
DSWG's band layout and the resized static weight are built inside the graph from the input's
size, so nothing of the export size is baked in. FFT paths (ONNX has no complex tensors) refuse
to export with a clear error.
"""

import warnings

import numpy as np
import pytest
import torch

from dsm_ref import create_model
from dsm_ref.dswg import DynamicSpectrumWeights
from dsm_ref.mixers import DynamicSpectrumMixer, GlobalFilter

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.slow


def _selecting(model: torch.nn.Module) -> torch.nn.Module:
    """Gives every DSWG band weights that vary with the image (they start at exactly 1)."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, DynamicSpectrumWeights):
            torch.nn.init.normal_(module.fc2.weight, std=0.3)
    return model.eval()


def _export(model: torch.nn.Module, example: torch.Tensor, path) -> "ort.InferenceSession":
    dims = {0: torch.export.Dim("batch", min=1, max=64),
            2: torch.export.Dim("height", min=16, max=512),
            3: torch.export.Dim("width", min=16, max=512)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), dynamo=True, verbose=False,
                                    dynamic_shapes={"x": dims})
    program.save(str(path))
    return ort.InferenceSession(str(path))


def _run(session, x: torch.Tensor) -> list[np.ndarray]:
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def test_classifier_exported_once_runs_at_other_sizes(tmp_path):
    model = _selecting(create_model("dsm_micro", num_classes=10, img_size=32, depths=(1, 1, 1, 1)))
    session = _export(model, torch.randn(2, 3, 32, 32), tmp_path / "classifier.onnx")
    for shape in [(2, 3, 32, 32), (1, 3, 40, 56), (3, 3, 17, 23)]:
        x = torch.randn(*shape)
        (logits,) = _run(session, x)
        with torch.no_grad():
            np.testing.assert_allclose(logits, model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_feature_pyramid_exported_once_runs_at_other_sizes(tmp_path):
    model = _selecting(create_model("dsm_nano", img_size=64, features_only=True,
                                    depths=(1, 1, 1, 1)))
    session = _export(model, torch.randn(2, 3, 64, 64), tmp_path / "features.onnx")
    for shape in [(1, 3, 64, 64), (2, 3, 72, 96)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x)
        levels = _run(session, x)
        assert [level.shape for level in levels] == [tuple(e.shape) for e in expected]
        for level, reference in zip(levels, expected, strict=True):
            np.testing.assert_allclose(level, reference.numpy(), rtol=1e-4, atol=1e-5)


def test_fft_dct_refuses_export_clearly():
    mixer = DynamicSpectrumMixer(8, (8, 8), dct_method="fft").eval()
    with warnings.catch_warnings(), pytest.raises(Exception) as caught:
        warnings.simplefilter("ignore")
        torch.onnx.export(mixer, (torch.randn(1, 8, 8, 8),), dynamo=True, verbose=False)
    chain, error = [], caught.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("dct_method='matmul'" in text for text in chain), chain[0][:300]


def test_gfnet_filter_exports_through_onnx_dft(tmp_path):
    """GFNet's rfft2/irfft2 pair becomes ONNX DFT nodes: it exports (at a fixed size here)."""
    mixer = GlobalFilter(8, (8, 8)).eval()
    x = torch.randn(2, 8, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(mixer, (x,), dynamo=True, verbose=False)
    program.save(str(tmp_path / "gfnet.onnx"))
    session = ort.InferenceSession(str(tmp_path / "gfnet.onnx"))
    with torch.no_grad():
        np.testing.assert_allclose(_run(session, x)[0], mixer(x).numpy(), rtol=1e-4, atol=1e-5)
