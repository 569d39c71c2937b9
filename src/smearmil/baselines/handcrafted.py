"""94 hand-crafted features of the segmented lymphocyte (nucleus and cytoplasm): 12 shape, 9 intensity,
72 texture, 1 density. Shape is measured on the region as segmented, holes included, so that its Euler
number and filled area say something of its own."""

from __future__ import annotations

import numpy as np
from skimage.feature import graycomatrix
from skimage.measure import regionprops

from .segmentation import SegmentationConfig, segment

SHAPE = [
    "area",
    "axis_major_length",
    "axis_minor_length",
    "eccentricity",
    "area_convex",
    "area_filled",
    "euler_number",
    "equivalent_diameter_area",
    "solidity",
    "extent",
    "perimeter",
    "perimeter_crofton",
]
# the 23 co-occurrence statistics of the paper's Section 3.2, in its order (Haralick 1973, Soh and
# Tsatsoulis 1999, Clausi 2002, as in the widely used MATLAB GLCM_Features), plus the fractal dimension
# (averaged over several thresholds)
GLCM = [
    "autocorrelation",
    "contrast",
    "correlation_1",
    "correlation_2",
    "cluster_prominence",
    "cluster_shade",
    "dissimilarity",
    "energy",
    "entropy",
    "homogeneity_1",
    "homogeneity_2",
    "max_probability",
    "sum_of_squares_variance",
    "sum_average",
    "sum_variance",
    "sum_entropy",
    "difference_variance",
    "difference_entropy",
    "imc1",
    "imc2",
    "inverse_difference",
    "inverse_difference_normalized",
    "inverse_difference_moment_normalized",
]
TEXTURE = GLCM + ["fractal_dimension"]
CHANNELS = ["r", "g", "b"]
FEATURE_NAMES = (
    SHAPE
    + [f"{stat}_{c}" for c in CHANNELS for stat in ("min", "max", "mean")]
    + [f"{t}_{c}" for c in CHANNELS for t in TEXTURE]
    + ["lymphocyte_count"]
)
ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
FRACTAL_QUANTILES = (0.2, 0.4, 0.6, 0.8)  # the thresholds the fractal dimension is averaged over
LEVELS = 32
_EPS = 1e-12


def shape_features(mask: np.ndarray) -> np.ndarray:
    props = regionprops(mask.astype(np.uint8))
    if not props:
        return np.zeros(len(SHAPE))
    return np.array([float(getattr(props[0], name)) for name in SHAPE])


def glcm_statistics(p: np.ndarray) -> np.ndarray:
    """The 23 co-occurrence statistics of normalised GLCMs ``p`` (L, L, A), averaged over the A angles.

    Grey levels run 1..L. ``correlation_1`` is MATLAB graycoprops' sum (i - mu_i)(j - mu_j) p / (s_i s_j),
    ``correlation_2`` Haralick's (sum i j p - mu_x mu_y) / (s_x s_y): the two formulas the paper lists,
    equal up to rounding. ``energy`` is sum p^2 (graycoprops' energy, the angular second moment);
    ``homogeneity_1`` sum p / (1 + |i - j|), ``homogeneity_2`` sum p / (1 + (i - j)^2); ``inverse_difference``
    sum over i != j of p / |i - j| (the MATLAB code's INV repeats homogeneity 1, which would duplicate a
    column); ``inverse_difference_normalized`` sum p / (1 + |i - j| / L) and
    ``inverse_difference_moment_normalized`` sum p / (1 + (i - j)^2 / L^2) (Clausi 2002)."""
    levels = p.shape[0]
    i, j = np.meshgrid(np.arange(1, levels + 1), np.arange(1, levels + 1), indexing="ij")
    i, j = i[..., None].astype(np.float64), j[..., None].astype(np.float64)
    px, py = p.sum(axis=1), p.sum(axis=0)  # (L, A)
    k = np.arange(1, levels + 1, dtype=np.float64)[:, None]
    mux, muy = (k * px).sum(0), (k * py).sum(0)
    sdx = np.sqrt(((k - mux) ** 2 * px).sum(0))
    sdy = np.sqrt(((k - muy) ** 2 * py).sum(0))
    logp = np.log(p + _EPS)
    d = np.abs(i - j)
    s = i + j - mux - muy
    cov = (i * j * p).sum((0, 1)) - mux * muy
    correlation_2 = np.where(sdx * sdy > _EPS, cov / np.maximum(sdx * sdy, _EPS), 1.0)
    centred = ((i - mux) * (j - muy) * p).sum((0, 1))
    correlation_1 = np.where(sdx * sdy > _EPS, centred / np.maximum(sdx * sdy, _EPS), 1.0)
    # sums and differences of the two grey levels
    psum = np.stack(
        [
            np.bincount((i + j).astype(int)[..., 0].ravel(), p[..., a].ravel(), 2 * levels + 1)
            for a in range(p.shape[2])
        ],
        axis=1,
    )[2:]
    pdiff = np.stack(
        [np.bincount(d.astype(int)[..., 0].ravel(), p[..., a].ravel(), levels) for a in range(p.shape[2])], axis=1
    )
    ks = np.arange(2, 2 * levels + 1, dtype=np.float64)[:, None]
    kd = np.arange(levels, dtype=np.float64)[:, None]
    sum_average = (ks * psum).sum(0)
    diff_mean = (kd * pdiff).sum(0)
    hxy = -(p * logp).sum((0, 1))
    hx, hy = -(px * np.log(px + _EPS)).sum(0), -(py * np.log(py + _EPS)).sum(0)
    outer = px[:, None, :] * py[None, :, :]
    hxy1 = -(p * np.log(outer + _EPS)).sum((0, 1))
    hxy2 = -(outer * np.log(outer + _EPS)).sum((0, 1))
    imc1 = np.where(np.maximum(hx, hy) > _EPS, (hxy - hxy1) / np.maximum(np.maximum(hx, hy), _EPS), 0.0)
    imc2 = np.sqrt(np.clip(1 - np.exp(-2 * (hxy2 - hxy)), 0, None))
    off = d > 0
    stats = [
        (i * j * p).sum((0, 1)),
        ((i - j) ** 2 * p).sum((0, 1)),
        correlation_1,
        correlation_2,
        (s**4 * p).sum((0, 1)),
        (s**3 * p).sum((0, 1)),
        (d * p).sum((0, 1)),
        (p**2).sum((0, 1)),
        hxy,
        (p / (1 + d)).sum((0, 1)),
        (p / (1 + (i - j) ** 2)).sum((0, 1)),
        p.max(axis=(0, 1)),
        ((i - mux) ** 2 * p).sum((0, 1)),
        sum_average,
        ((ks - sum_average) ** 2 * psum).sum(0),
        -(psum * np.log(psum + _EPS)).sum(0),
        ((kd - diff_mean) ** 2 * pdiff).sum(0),
        -(pdiff * np.log(pdiff + _EPS)).sum(0),
        imc1,
        imc2,
        np.where(off, p / np.maximum(d, 1), 0).sum((0, 1)),
        (p / (1 + d / levels)).sum((0, 1)),
        (p / (1 + (i - j) ** 2 / levels**2)).sum((0, 1)),
    ]
    return np.array([float(np.mean(v)) for v in stats])


def region_glcm(channel: np.ndarray, mask: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """Normalised GLCMs (levels, levels, 4 angles) of the pixels inside ``mask`` (distance 1, symmetric)."""
    rows, cols = np.nonzero(mask)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    q = (channel[box].astype(np.int64) * levels // 256) + 1
    q[~mask[box]] = 0  # pairs touching the outside land in row/column 0 and are dropped
    counts = graycomatrix(q.astype(np.uint8), [1], list(ANGLES), levels=levels + 1, symmetric=True)[1:, 1:, 0, :]
    counts = counts.astype(np.float64)
    totals = counts.sum(axis=(0, 1))
    single = np.zeros_like(counts)  # a region of one pixel: all mass on its own level
    single[q[mask[box]][0] - 1, q[mask[box]][0] - 1, :] = 1.0
    return np.where(totals > 0, counts / np.maximum(totals, 1), single)


def fractal_dimension(binary: np.ndarray) -> float:
    """Box-counting dimension of a binary image (2 for a filled square, 1 for a line)."""
    if binary.sum() == 0:
        return 0.0
    side = 2 ** int(np.ceil(np.log2(max(binary.shape))))
    level = np.zeros((side, side), bool)
    level[: binary.shape[0], : binary.shape[1]] = binary
    sizes, counts = [], []
    size = 1
    while level.shape[0] >= 2:  # boxes of twice the side: any pixel of the 2 x 2 boxes below
        n = level.shape[0] // 2
        level = np.asarray(level.reshape(n, 2, n, 2).any(axis=(1, 3)))
        size *= 2
        sizes.append(size)
        counts.append(level.sum())
    if len(sizes) < 2:
        return 0.0
    slope = np.polyfit(np.log(1.0 / np.array(sizes)), np.log(np.array(counts)), 1)[0]
    return float(slope)


def average_fractal_dimension(channel: np.ndarray, mask: np.ndarray) -> float:
    """Mean box-counting dimension of the region's pixels brighter than each of several thresholds (the
    ``FRACTAL_QUANTILES`` of its values), over the thresholds that leave some pixel (0 if none does)."""
    rows, cols = np.nonzero(mask)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    inside, values = mask[box], channel[box]
    above = [(values > t) & inside for t in np.unique(np.quantile(channel[mask], FRACTAL_QUANTILES))]
    found = [fractal_dimension(b) for b in above if b.any()]
    return float(np.mean(found)) if found else 0.0


def texture_features(channel: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.append(glcm_statistics(region_glcm(channel, mask)), average_fractal_dimension(channel, mask))


def cell_features(rgb: np.ndarray, config: SegmentationConfig | None = None) -> np.ndarray:
    """The 94 features of one cell image (uint8 RGB); zeros where no lymphocyte was found."""
    seg = segment(rgb, config)
    if not seg.mask.any():
        out = np.zeros(len(FEATURE_NAMES))
        out[-1] = seg.count
        return out
    inside = rgb[seg.mask].astype(np.float64)
    intensity = np.concatenate([[inside[:, c].min(), inside[:, c].max(), inside[:, c].mean()] for c in range(3)])
    texture = np.concatenate([texture_features(rgb[..., c], seg.mask) for c in range(3)])
    return np.concatenate([shape_features(seg.mask), intensity, texture, [seg.count]])
