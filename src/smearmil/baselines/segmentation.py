"""Lymphocyte segmentation of the classical pipeline (paper Section 3.2): the whole cell, nucleus and cytoplasm.

Smoothing; SLIC superpixels at several numbers of segments, averaged into a fuzzy multi-scale image per
channel; K-means (K = 3) in HSV on that image, separating lymphocytes, other cells and background. Hue is
an angle (clustered as its cosine and sine, so that it wraps) and dominates the distance: the stained
nucleus and the paler cytoplasm share a bluish hue that red cells and background lack, so the darkest
cluster is the lymphocyte with its cytoplasm. Every pixel of the full-resolution image, smoothed alike, then
joins its nearest cluster, so the region keeps its own outline and holes; the largest connected lymphocyte
is kept, unfilled, and the lymphocytes in the image are counted. ``nucleus`` marks the cell's strongly
stained pixels (saturation above the image's Otsu threshold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.color import rgb2hsv
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label
from skimage.segmentation import slic
from skimage.transform import resize
from sklearn.cluster import KMeans


@dataclass(frozen=True)
class SegmentationConfig:
    sigma: float = 1.0  # Gaussian smoothing at work size (scaled with the image for the full-resolution pass)
    slic_segments: tuple[int, ...] = (40, 80, 160)
    compactness: float = 10.0
    work_size: int = 112  # the clusters are learnt at this side (speed); pixels are assigned at full size
    min_area_fraction: float = 0.01  # smallest region counted as a lymphocyte, as a fraction of the image


@dataclass
class Segmentation:
    mask: np.ndarray  # bool (H, W): the largest lymphocyte, nucleus and cytoplasm, holes kept
    nucleus: np.ndarray  # bool (H, W): its strongly stained pixels
    count: int  # lymphocytes in the image
    fuzzy: np.ndarray  # the fuzzy multi-scale image at work size


def fuzzy_multiscale(image: np.ndarray, config: SegmentationConfig) -> np.ndarray:
    """Average, over SLIC scales, of the image where each superpixel takes its mean colour."""
    layers = []
    for n in config.slic_segments:
        labels = slic(image, n_segments=n, compactness=config.compactness, start_label=0, channel_axis=-1)
        counts = np.bincount(labels.ravel())
        means = np.stack([np.bincount(labels.ravel(), image[..., c].ravel()) / counts for c in range(3)], axis=1)
        layers.append(means[labels])
    return np.mean(layers, axis=0)


def hsv_points(hsv: np.ndarray) -> np.ndarray:
    """(H * W, 4) points to cluster: cos and sin of the hue angle, saturation, value."""
    hsv = hsv.reshape(-1, 3)
    angle = 2 * np.pi * hsv[:, 0]
    return np.column_stack([np.cos(angle), np.sin(angle), hsv[:, 1], hsv[:, 2]])


def segment(rgb: np.ndarray, config: SegmentationConfig | None = None) -> Segmentation:
    config = config or SegmentationConfig()
    h, w = rgb.shape[:2]
    image = rgb.astype(np.float64) / 255.0
    small = resize(image, (config.work_size,) * 2, anti_aliasing=True) if (h, w) != (config.work_size,) * 2 else image
    fuzzy = fuzzy_multiscale(gaussian(small, sigma=config.sigma, channel_axis=-1), config)
    points = hsv_points(rgb2hsv(np.clip(fuzzy, 0, 1)))
    km = KMeans(n_clusters=3, n_init=1, max_iter=50, random_state=0).fit(points[:: max(1, len(points) // 4000)])
    lymphocyte = int(np.argmin(km.cluster_centers_[:, 3]))  # stained cells have the lowest value (V)
    hsv = rgb2hsv(gaussian(image, sigma=config.sigma * max(h, w) / config.work_size, channel_axis=-1))
    clusters = km.predict(hsv_points(hsv)).reshape(h, w)
    regions = label(ndimage.binary_opening(clusters == lymphocyte))
    areas = np.bincount(regions.ravel())[1:]
    count = int((areas >= config.min_area_fraction * h * w).sum())
    if areas.size == 0:
        empty = np.zeros((h, w), bool)
        return Segmentation(empty, empty, 0, fuzzy)
    mask = regions == int(np.argmax(areas)) + 1
    saturation = hsv[..., 1]
    stained = saturation > threshold_otsu(saturation) if np.ptp(saturation) > 0 else np.zeros((h, w), bool)
    return Segmentation(mask, mask & stained, count, fuzzy)
