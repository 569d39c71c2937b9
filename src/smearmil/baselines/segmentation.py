"""Lymphocyte segmentation of the classical pipeline (paper Section 3.2).

Smoothing; SLIC superpixels at several numbers of segments, averaged into a fuzzy multi-scale image
per channel; K-means (K = 3) in HSV separating lymphocyte, other cells and background; the largest
lymphocyte region is kept and the lymphocytes in the image are counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.color import rgb2hsv
from skimage.filters import gaussian
from skimage.measure import label
from skimage.segmentation import slic
from skimage.transform import resize
from sklearn.cluster import KMeans


@dataclass(frozen=True)
class SegmentationConfig:
    sigma: float = 1.0
    slic_segments: tuple[int, ...] = (40, 80, 160)
    compactness: float = 10.0
    work_size: int = 112  # segmentation runs at this side (speed); the mask is scaled back
    min_area_fraction: float = 0.01  # smallest region counted as a lymphocyte, as a fraction of the image


@dataclass
class Segmentation:
    mask: np.ndarray  # bool (H, W): the largest lymphocyte region
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


def segment(rgb: np.ndarray, config: SegmentationConfig | None = None) -> Segmentation:
    config = config or SegmentationConfig()
    h, w = rgb.shape[:2]
    small = (
        resize(rgb, (config.work_size, config.work_size), anti_aliasing=True)
        if (h, w) != (config.work_size,) * 2
        else rgb.astype(np.float64) / 255.0
    )
    smooth = gaussian(small, sigma=config.sigma, channel_axis=-1)
    fuzzy = fuzzy_multiscale(smooth, config)
    hsv = rgb2hsv(np.clip(fuzzy, 0, 1)).reshape(-1, 3)
    km = KMeans(n_clusters=3, n_init=1, max_iter=50, random_state=0).fit(hsv[:: max(1, hsv.shape[0] // 4000)])
    clusters = km.predict(hsv).reshape(config.work_size, config.work_size)
    darkest = int(np.argmin(km.cluster_centers_[:, 2]))  # stained nuclei have the lowest value (V)
    lymph = ndimage.binary_fill_holes(ndimage.binary_opening(clusters == darkest, iterations=1))
    regions = label(lymph)
    areas = np.bincount(regions.ravel())[1:]
    min_area = config.min_area_fraction * config.work_size**2
    count = int((areas >= min_area).sum())
    if areas.size == 0:
        return Segmentation(np.zeros((h, w), bool), 0, fuzzy)
    largest = regions == (int(np.argmax(areas)) + 1)
    mask = resize(largest.astype(np.float64), (h, w), order=0, anti_aliasing=False) > 0.5
    return Segmentation(mask, count, fuzzy)
