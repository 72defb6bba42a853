"""The course's exercise checks (``dsm_ref.exercises``): each passes its solution, and fails, with a
message and no traceback, on a stub and on plausible wrong answers, so that no check is one that
cannot fail. Needs no data set."""

import importlib
import math

import numpy as np
import pytest
import torch
from scipy import stats

from dsm_ref.dct import dct, dct2
from dsm_ref.exercises import TOPICS
from dsm_ref.flops import fft_flops

MODULES = ["dct", "spectrum", "dswg", "blocks", "training", "ablations", "complexity", "dense"]


def _exercises():
    for name in MODULES:
        module = importlib.import_module(f"dsm_ref.exercises.{name}")
        for check in sorted(n for n in module.__all__ if n.startswith("check_")):
            yield module, check.removeprefix("check_")


EXERCISES = list(_exercises())


def _stub(name):
    def stub(*args, **kwargs):
        raise NotImplementedError

    stub.__name__ = name
    return stub


def test_every_notebook_module_has_two_or_three_exercises():
    for name in MODULES:
        assert name in TOPICS.values()
        module = importlib.import_module(f"dsm_ref.exercises.{name}")
        checks = [n for n in module.__all__ if n.startswith("check_")]
        assert 2 <= len(checks) <= 3, (name, checks)
        for check in checks:
            assert f"solution_{check.removeprefix('check_')}" in module.__all__


@pytest.mark.parametrize("module, exercise", EXERCISES, ids=[e for _, e in EXERCISES])
def test_a_check_passes_its_solution(module, exercise, capsys):
    assert getattr(module, f"check_{exercise}")(getattr(module, f"solution_{exercise}")) is True
    out = capsys.readouterr().out
    assert out.startswith(f"{exercise}: correct.") and out.count("\n") == 1, out


@pytest.mark.parametrize("module, exercise", EXERCISES, ids=[e for _, e in EXERCISES])
def test_a_stub_is_not_attempted_yet(module, exercise, capsys):
    assert getattr(module, f"check_{exercise}")(_stub(exercise)) is False
    out = capsys.readouterr().out
    assert out.startswith(f"{exercise}: not attempted yet.") and out.count("\n") == 1, out


def _fails(check, function, *fragments, capsys):
    """``check(function)`` is False and prints one line naming a case and containing every
    fragment (the hint that fits the mistake)."""
    assert check(function) is False
    out = capsys.readouterr().out
    assert "not right yet. On " in out and out.count("\n") == 1, out
    for fragment in fragments:
        assert fragment in out, (fragment, out)
    return out


def test_float32_answers_pass(capsys):
    from dsm_ref.exercises import blocks, spectrum
    from dsm_ref.exercises import dct as ex

    assert ex.check_dct_basis_image(lambda *args: ex.solution_dct_basis_image(*args).float())
    assert ex.check_idct_from_definition(
        lambda x: ex.solution_idct_from_definition(x.float()).float())

    def radial_band_mask_float32(height, width, low, high):  # r in float32, as dsm_ref does
        fy = torch.arange(height, dtype=torch.float32) / height
        fx = torch.arange(width, dtype=torch.float32) / width
        radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / math.sqrt(2)
        return (radius >= low) & (radius < high)  # a bool mask is welcome too

    assert spectrum.check_radial_band_mask(radial_band_mask_float32)
    assert spectrum.check_band_energy_after_gains(
        lambda x, ids, g: spectrum.solution_band_energy_after_gains(x.float(), ids, g.float()))
    assert spectrum.check_mirrored_spectrum(
        lambda x, dim: spectrum.solution_mirrored_spectrum(x.float(), dim))
    assert blocks.check_resize_static_weight(
        lambda w, size: blocks.solution_resize_static_weight(w.double(), size))
    assert blocks.check_static_mixer_macs(
        lambda *args: float(blocks.solution_static_mixer_macs(*args)))
    capsys.readouterr()


def test_a_function_that_raises_is_reported_not_raised(capsys):
    from dsm_ref.exercises.dct import check_dct_basis_image

    def broken(u, v, height, width):
        return torch.ones(height, 2) @ torch.ones(width, 2)  # a shape error

    _fails(check_dct_basis_image, broken, "raised RuntimeError", capsys=capsys)


# --- notebook 01 ---------------------------------------------------------------------------------

def _cosines(k, n):
    return torch.cos(math.pi * k * (2 * torch.arange(n, dtype=torch.float64) + 1) / (2 * n))


def test_dct_checks_fail_wrong_answers(capsys):
    from dsm_ref.exercises import dct as ex

    def unscaled(u, v, h, w):  # no orthonormal scaling
        return torch.outer(_cosines(u, h), _cosines(v, w))

    _fails(ex.check_dct_basis_image, unscaled, "times the right one", "sqrt(1/N)", capsys=capsys)

    def transposed(u, v, h, w):
        return ex.solution_dct_basis_image(v, u, w, h)

    _fails(ex.check_dct_basis_image, transposed, "transpose", capsys=capsys)

    def same_scale_for_dc(u, v, h, w):  # sqrt(2/N) for every k, DC included
        return math.sqrt(2 / h) * math.sqrt(2 / w) * torch.outer(_cosines(u, h), _cosines(v, w))

    _fails(ex.check_dct_basis_image, same_scale_for_dc, "s_0 = sqrt(1/N)", capsys=capsys)

    _fails(ex.check_idct_from_definition, lambda x: dct(x), "forward DCT-II", capsys=capsys)

    def idct_without_scales(x):
        n = len(x)
        k = torch.arange(n, dtype=torch.float64)[None, :]
        m = torch.arange(n, dtype=torch.float64)[:, None]
        return torch.cos(math.pi * k * (2 * m + 1) / (2 * n)) @ x

    _fails(ex.check_idct_from_definition, idct_without_scales, "s_0 = sqrt(1/N)", capsys=capsys)

    def index_not_count(image, fraction):
        return ex.solution_coefficients_for_energy(image, fraction) - 1

    _fails(ex.check_coefficients_for_energy, index_not_count, "Off by one", capsys=capsys)

    def by_magnitude(image, fraction):
        magnitude = dct2(image).abs().flatten().sort(descending=True).values
        return int((magnitude.cumsum(0) / magnitude.sum() < fraction).sum()) + 1

    _fails(ex.check_coefficients_for_energy, by_magnitude, "square", capsys=capsys)


# --- notebook 02 ---------------------------------------------------------------------------------

def _radial(height, width, low, high, rows=None, cols=None, root2=True, closed=(True, False)):
    """A radial band mask with the given denominators and interval ends, for wrong answers."""
    fy = torch.arange(height, dtype=torch.float64) / (rows or height)
    fx = torch.arange(width, dtype=torch.float64) / (cols or width)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / (math.sqrt(2) if root2 else 1)
    above = radius >= low if closed[0] else radius > low
    below = radius <= high if closed[1] else radius < high
    return (above & below).double()


def test_spectrum_checks_fail_wrong_answers(capsys):
    from dsm_ref.exercises import spectrum as ex

    _fails(ex.check_radial_band_mask, lambda h, w, lo, hi: _radial(h, w, lo, hi, root2=False),
           "sqrt(2)", capsys=capsys)
    _fails(ex.check_radial_band_mask, lambda h, w, lo, hi: _radial(h, w, lo, hi,
                                                                   closed=(False, False)),
           "DC term", capsys=capsys)
    _fails(ex.check_radial_band_mask, lambda h, w, lo, hi: _radial(h, w, lo, hi,
                                                                   closed=(True, True)),
           "low = high = 0", "r == high is outside", capsys=capsys)
    _fails(ex.check_radial_band_mask, lambda h, w, lo, hi: _radial(h, w, lo, hi, rows=w, cols=h),
           "188 x 160", "other axis", capsys=capsys)
    _fails(ex.check_radial_band_mask,
           lambda h, w, lo, hi: _radial(h, w, lo, hi, rows=max(h - 1, 1), cols=max(w - 1, 1)),
           "not k / (N - 1)", capsys=capsys)
    _fails(ex.check_radial_band_mask, lambda h, w, lo, hi: _radial(w, h, lo, hi),
           "expected shape (188, 160), got (160, 188)", capsys=capsys)

    def shares(image, band_ids, gains, power=2, normalise=True):
        energy = dct2(image).pow(2)
        per_band = torch.bincount(band_ids.flatten(), weights=energy.flatten(),
                                  minlength=len(gains))
        after = gains.abs() ** power * per_band
        return after / after.sum() if normalise else after / per_band.sum()

    _fails(ex.check_band_energy_after_gains, lambda x, ids, g: shares(x, ids, g, power=1),
           "g**2", capsys=capsys)
    _fails(ex.check_band_energy_after_gains, lambda x, ids, g: shares(x, ids, g, normalise=False),
           "sum to 1", capsys=capsys)
    _fails(ex.check_band_energy_after_gains, lambda x, ids, g: shares(x, ids, g, power=0),
           "before the gains", capsys=capsys)

    _fails(ex.check_mirrored_spectrum, lambda x, dim: x.flip(dim), "does not mirror its spectrum",
           capsys=capsys)
    _fails(ex.check_mirrored_spectrum, lambda x, dim: -ex.solution_mirrored_spectrum(x, dim),
           "wrong way round", capsys=capsys)
    _fails(ex.check_mirrored_spectrum, lambda x, dim: ex.solution_mirrored_spectrum(x, -3 - dim),
           "other axis", capsys=capsys)

    def in_place(x, dim):
        x[..., 1::2] *= -1
        return x

    _fails(ex.check_mirrored_spectrum, in_place, "in place", capsys=capsys)


# --- notebook 03 ---------------------------------------------------------------------------------

def test_dswg_checks_fail_wrong_answers(capsys):
    from dsm_ref.exercises import dswg as ex

    def log_rms(spectrum, groups):
        b, h, w, c = spectrum.shape
        return torch.log1p(spectrum.square().reshape(b, h, w, groups, c // groups).mean(-1).sqrt())

    def mean_pooled(spectrum, length, groups):
        b, h, w, c = spectrum.shape
        features = log_rms(spectrum, groups)
        rows = torch.nn.functional.one_hot(torch.arange(h) * length // h, length).float()
        cols = torch.nn.functional.one_hot(torch.arange(w) * length // w, length).float()
        sums = torch.einsum("bhwg,hi,wj->bgij", features, rows, cols)
        return sums / torch.outer(rows.sum(0), cols.sum(0)).clamp_min(1)

    _fails(ex.check_band_descriptors_max, mean_pooled, "mean of each band", capsys=capsys)

    def max_without_empty_bands(spectrum, length, groups):
        b, h, w, c = spectrum.shape
        features = log_rms(spectrum, groups)
        rows, cols = torch.arange(h) * length // h, torch.arange(w) * length // w
        out = torch.zeros(b, groups, length, length)
        for i in range(length):
            for j in range(length):
                out[:, :, i, j] = features[:, rows == i][:, :, cols == j].amax(dim=(1, 2))
        return out

    _fails(ex.check_band_descriptors_max, max_without_empty_bands, "3 x 5 spectrum",
           "no coefficient", capsys=capsys)

    def per_channel_log(spectrum, length, groups):  # the descriptor "log", not the default
        b, h, w, c = spectrum.shape
        features = spectrum.abs().log1p().reshape(b, h, w, groups, c // groups).mean(-1)
        rows, cols = torch.arange(h) * length // h, torch.arange(w) * length // w
        out = torch.zeros(b, groups, length, length)
        for i in range(length):
            for j in range(length):
                in_band = features[:, rows == i][:, :, cols == j]
                if in_band.numel():
                    out[:, :, i, j] = in_band.amax(dim=(1, 2))
        return out

    _fails(ex.check_band_descriptors_max, per_channel_log, "log(1 + |S|) of every channel",
           capsys=capsys)

    _fails(ex.check_softmax_gate, lambda z: torch.softmax(z, dim=-1), "mean 1/16",
           capsys=capsys)

    def naive(z):
        return z.shape[-1] * z.exp() / z.exp().sum(-1, keepdim=True)

    _fails(ex.check_softmax_gate, naive, "large logits", "overflows", capsys=capsys)
    _fails(ex.check_softmax_gate, lambda z: z.shape[-1] * torch.softmax(z, dim=1),
           "last axis", capsys=capsys)
    _fails(ex.check_softmax_gate, lambda z: 2 * torch.sigmoid(z), "2*sigmoid", capsys=capsys)

    def without_layer_norm(length, groups, hidden_ratio=0.5, descriptor_norm=True):
        bands = groups * length**2
        hidden = max(16, round(bands * hidden_ratio))
        return 2 * bands * hidden + hidden + bands

    _fails(ex.check_dswg_parameter_count, without_layer_norm, "LayerNorm", capsys=capsys)

    def without_floor(length, groups, hidden_ratio=0.5, descriptor_norm=True):
        bands = groups * length**2
        hidden = round(bands * hidden_ratio)
        return (2 * bands if descriptor_norm else 0) + 2 * bands * hidden + hidden + bands

    _fails(ex.check_dswg_parameter_count, without_floor, "never drops below 16", capsys=capsys)


# --- notebook 04 ---------------------------------------------------------------------------------

def test_blocks_checks_fail_wrong_answers(capsys):
    from dsm_ref.exercises import blocks as ex

    _fails(ex.check_static_mixer_macs, lambda c, h, w: 2 * ex.solution_static_mixer_macs(c, h, w),
           "FLOP count", capsys=capsys)
    _fails(ex.check_static_mixer_macs, lambda c, h, w: h * w * (h + w) * c + h * w * c * c,
           "one DCT", capsys=capsys)
    _fails(ex.check_static_mixer_macs, lambda c, h, w: 2 * h * w * (h + w) * c,
           "projection", capsys=capsys)
    _fails(ex.check_static_mixer_macs, lambda c, h, w: 2 * (h * w) ** 2 * c + h * w * c * c,
           "(HW x HW)", capsys=capsys)

    count = ex.solution_dsm_block_parameter_count

    def parts(c, h, w, num_groups=4, spectrum_length=4, mlp_ratio=4.0, *, floor=16,
              hidden_of=int):
        bands = num_groups * spectrum_length**2
        hidden = max(floor, round(bands / 2))
        dswg = 2 * bands + 2 * bands * hidden + hidden + bands
        mlp_hidden = hidden_of(c * mlp_ratio)
        return 4 * c + h * w * c + dswg + c * c + c + 2 * c * mlp_hidden + mlp_hidden + c

    assert ex.check_dsm_block_parameter_count(parts)  # the helper itself is right
    capsys.readouterr()
    _fails(ex.check_dsm_block_parameter_count, lambda c, h, w, **k: count(c, h, w, **k) - h * w * c,
           "H*W*C", capsys=capsys)
    _fails(ex.check_dsm_block_parameter_count, lambda c, h, w, **k: count(c, h, w, **k) - 4 * c,
           "two LayerNorms", capsys=capsys)
    _fails(ex.check_dsm_block_parameter_count, lambda *a, **k: parts(*a, **k, floor=0),
           "G = 2, L = 2", "never drops below 16", capsys=capsys)
    _fails(ex.check_dsm_block_parameter_count, lambda *a, **k: parts(*a, **k, hidden_of=round),
           "mlp_ratio = 2.5", "rounded down", capsys=capsys)

    def resize(weight, size, **options):
        grid = weight.flatten(2).movedim(-1, 0)[None]
        out = torch.nn.functional.interpolate(grid, size=size, **options)[0]
        return out.movedim(0, -1).reshape(*size, *weight.shape[2:])

    _fails(ex.check_resize_static_weight,
           lambda w, s: resize(w, s, mode="bilinear", align_corners=True), "align_corners",
           capsys=capsys)
    _fails(ex.check_resize_static_weight, lambda w, s: resize(w, s, mode="nearest"),
           "nearest-neighbour", capsys=capsys)
    _fails(ex.check_resize_static_weight,
           lambda w, s: resize(w, s, mode="bilinear", antialias=True), "shrunk to 8 x 8",
           "antialias", capsys=capsys)
    _fails(ex.check_resize_static_weight,
           lambda w, s: ex.solution_resize_static_weight(w, s).movedim(-1, 0), "(H, W) first",
           capsys=capsys)


def test_resize_check_moves_a_real_checkpoint(capsys):
    """A resize that agrees on the small weights but breaks on the model's (here: on more than
    16 channels) is caught by the checkpoint case."""
    from dsm_ref.exercises import blocks as ex

    def breaks_on_wide_weights(weight, size):
        out = ex.solution_resize_static_weight(weight, size)
        return out * 1.01 if weight.shape[-1] > 32 else out

    _fails(ex.check_resize_static_weight, breaks_on_wide_weights, "dsm_nano checkpoint",
           capsys=capsys)


# --- notebook 05 ---------------------------------------------------------------------------------

def test_training_checks_fail_wrong_answers(capsys):
    from dsm_ref.exercises import training as ex

    def warmup_from_zero(step, total_steps, warmup_steps, min_factor):
        if step < warmup_steps:
            return step / warmup_steps
        return ex.solution_warmup_cosine_factor(step, total_steps, warmup_steps, min_factor)

    _fails(ex.check_warmup_cosine_factor, warmup_from_zero, "step 0", "(step + 1)",
           capsys=capsys)

    def no_cap(step, total_steps, warmup_steps, min_factor):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    _fails(ex.check_warmup_cosine_factor, no_cap, "steps past the end", "cap the progress",
           capsys=capsys)

    def over_other_classes(logits, targets, smoothing):
        k = logits.shape[-1]
        q = torch.full_like(logits, smoothing / (k - 1))
        q.scatter_(1, targets[:, None], 1 - smoothing)
        return -(q * torch.log_softmax(logits, -1)).sum(-1).mean()

    _fails(ex.check_label_smoothing_loss, over_other_classes, "K - 1", capsys=capsys)

    def log_of_softmax(logits, targets, smoothing):
        log_p = torch.softmax(logits, -1).log()
        nll = -log_p.gather(1, targets[:, None]).squeeze(1)
        return ((1 - smoothing) * nll - smoothing * log_p.mean(-1)).mean()

    _fails(ex.check_label_smoothing_loss, log_of_softmax, "log_softmax", capsys=capsys)

    def as_fraction(logits, labels, k):
        return ex.solution_topk_accuracy(logits, labels, k) / 100

    _fails(ex.check_topk_accuracy, as_fraction, "percentage", capsys=capsys)

    def unclamped(logits, labels, k):
        top = logits.topk(k, dim=-1).indices
        return 100 * (top == labels[:, None]).any(-1).float().mean().item()

    _fails(ex.check_topk_accuracy, unclamped, "3 classes", "min(k, K)", capsys=capsys)


# --- notebook 06 ---------------------------------------------------------------------------------

def test_ablation_checks_fail_wrong_answers(capsys):
    from dsm_ref.exercises import ablations as ex

    def welch(arm, reference):
        interval = stats.ttest_ind(arm, reference, equal_var=False).confidence_interval(0.95)
        return float(np.mean(arm) - np.mean(reference)), interval.low, interval.high

    _fails(ex.check_paired_interval, welch, "unpaired (Welch)", capsys=capsys)

    def normal_quantile(arm, reference):
        diffs = np.asarray(arm) - np.asarray(reference)
        half = 1.959964 * diffs.std(ddof=1) / math.sqrt(len(diffs))
        return diffs.mean(), diffs.mean() - half, diffs.mean() + half

    _fails(ex.check_paired_interval, normal_quantile, "Student's t", capsys=capsys)

    def population_std(arm, reference):
        diffs = np.asarray(arm) - np.asarray(reference)
        half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std() / math.sqrt(len(diffs))
        return diffs.mean(), diffs.mean() - half, diffs.mean() + half

    _fails(ex.check_paired_interval, population_std, "ddof=1", capsys=capsys)

    _fails(ex.check_holm_adjust, lambda p: [min(1.0, len(p) * x) for x in p], "Bonferroni",
           capsys=capsys)

    def no_running_max(p):
        order = sorted(range(len(p)), key=p.__getitem__)
        out = [0.0] * len(p)
        for rank, i in enumerate(order):
            out[i] = min(1.0, (len(p) - rank) * p[i])
        return out

    _fails(ex.check_holm_adjust, no_running_max, "running maximum", capsys=capsys)
    _fails(ex.check_holm_adjust, lambda p: sorted(ex.solution_holm_adjust(p)), "input",
           capsys=capsys)

    def one_sided(a, b):
        a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
        if a_only + b_only == 0:
            return 1.0
        return stats.binomtest(a_only, a_only + b_only, 0.5, alternative="greater").pvalue

    _fails(ex.check_mcnemar_exact_p, one_sided, "two-sided", capsys=capsys)

    def all_images(a, b):
        return stats.binomtest(int(np.sum(a & ~b)), len(a), 0.5).pvalue

    _fails(ex.check_mcnemar_exact_p, all_images, "discordant", capsys=capsys)


# --- notebook 07 ---------------------------------------------------------------------------------

def test_complexity_checks_fail_wrong_answers(capsys):
    from dsm_ref.exercises import complexity as ex

    _fails(ex.check_matmul_dct2_flops, lambda h, w, c: h * w * c * (h + w), "multiply-adds",
           capsys=capsys)
    _fails(ex.check_matmul_dct2_flops, lambda h, w, c: 2.0 * (h * w) ** 2 * c, "Kronecker",
           capsys=capsys)

    def all_complex(h, w, c):
        return h * c * fft_flops(w) + w * c * fft_flops(h)

    _fails(ex.check_fft_dct2_flops, all_complex, "real", capsys=capsys)

    def natural_log(h, w, c):
        return h * c * 2.5 * w * math.log(max(w, 1)) + (w // 2 + 1) * c * 5 * h * math.log(
            max(h, 1))

    _fails(ex.check_fft_dct2_flops, natural_log, "counter gives", capsys=capsys)

    _fails(ex.check_first_grid_dct_costlier, lambda k: k**2 // 4, "Off by one", capsys=capsys)
    _fails(ex.check_first_grid_dct_costlier, lambda k: k**2 // 2 + 1, "only dct2",
           capsys=capsys)


# --- notebook 08 ---------------------------------------------------------------------------------

def test_dense_checks_fail_wrong_answers(capsys):
    from dsm_ref.exercises import dense as ex

    def absent_as_zero(pred, target, num_classes):
        matrix = torch.bincount(target.flatten() * num_classes + pred.flatten(),
                                minlength=num_classes**2).reshape(num_classes, -1).double()
        tp = matrix.diag()
        union = matrix.sum(0) + matrix.sum(1) - tp
        iou = torch.where(union > 0, tp / union.clamp_min(1), torch.zeros_like(tp))
        return iou.mean().item(), (tp.sum() / matrix.sum()).item()

    _fails(ex.check_scores_from_confusion, absent_as_zero, "absent", capsys=capsys)

    def inclusive_edges(instances, count):
        boxes = ex.solution_boxes_from_instance_map(instances, count)
        return boxes - torch.tensor([0.0, 0.0, 1.0, 1.0])

    _fails(ex.check_boxes_from_instance_map, inclusive_edges, "one past the last pixel",
           capsys=capsys)

    def rows_first(instances, count):
        return ex.solution_boxes_from_instance_map(instances, count)[:, [1, 0, 3, 2]]

    _fails(ex.check_boxes_from_instance_map, rows_first, "x1, y1, x2, y2", capsys=capsys)

    def every_paste(instances, count):
        boxes = ex.solution_boxes_from_instance_map(instances, count)
        return torch.cat([boxes, torch.zeros(count - len(boxes), 4)])

    _fails(ex.check_boxes_from_instance_map, every_paste, "entirely covered", capsys=capsys)

    def ceil_division(height, width, stem_stride=2, num_stages=4):
        grids = [(-(-height // stem_stride), -(-width // stem_stride))]
        for _ in range(num_stages - 1):
            grids.append((-(-grids[-1][0] // 2), -(-grids[-1][1] // 2)))
        return grids

    _fails(ex.check_pyramid_grid_sizes, ceil_division, "70x90", "remainder", capsys=capsys)
