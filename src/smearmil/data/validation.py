"""Image checks (unreadable, truncated, duplicated cells) and the one entry point ``load_cohort``."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..utils.progress import track
from .adhoc import cohort_from_folders
from .cohort import CellSet, Cohort
from .images import IMAGE_SUFFIXES, content_hash, decode, read_image_bytes
from .options import DataOptions
from .problems import DataError, Problem, errors_in, warn_skipped
from .readers import read


@dataclass(frozen=True)
class ImageCheck:
    path: Path
    digest: str | None  # of the file's bytes: the data's identity
    error: str | None
    pixels: str | None = None  # of the decoded pixels: the same cell however its file was re-saved


def check_file(path: Path) -> ImageCheck:
    """Read and decode one file; never raises."""
    try:
        data = read_image_bytes(path)
        image = decode(data, path.name)  # in full: cells are compared by every pixel
    except OSError as error:
        return ImageCheck(path, None, str(error))
    pixels = content_hash(f"{image.size}|".encode() + image.tobytes())
    return ImageCheck(path, content_hash(data), None, pixels)


def check_files(paths: Sequence[Path], progress: bool = True, workers: int = 2) -> list[ImageCheck]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(track(pool.map(check_file, paths), "checking images", total=len(paths), enabled=progress))


def _unreadable(check: ImageCheck, owner: str) -> Problem:
    return Problem(
        "unreadable_image",
        str(check.path),
        f"{owner}: cannot be decoded ({check.error}); skipped. Re-export or delete the file",
        severity="warning",
    )


def check_cohort_images(cohort: Cohort, drop_duplicates: bool = True, progress: bool = True) -> None:
    """Decode every cell once; drop unreadable images and (by default) repeated ones, recording problems.

    The same cell in two patients (a copy, a re-saved file with the same pixels, or a symlinked file or
    folder) is an error naming both: it would put one cell in two bags, and so possibly in both the
    training and the test patients. Cells are compared by their decoded pixels, not their bytes.
    """
    checks = iter(check_files([p for patient in cohort.patients for p in patient.images], progress))
    owners: dict[str, tuple[str, Path]] = {}  # content hash -> (patient, file) where it was seen first
    for patient in cohort.patients:
        seen: dict[str, Path] = {}
        keep = []
        digests = []
        for _ in patient.images:
            check = next(checks)
            digests.append(check.digest or "")
            if check.error is not None:
                cohort.problems.append(_unreadable(check, f"patient {patient.id}"))
                keep.append(False)
                continue
            assert check.pixels is not None
            other, other_path = owners.setdefault(check.pixels, (patient.id, check.path))
            if other != patient.id:
                cohort.problems.append(
                    Problem(
                        "duplicate_across_patients",
                        str(check.path),
                        f"patient {patient.id}: same content as {other_path} of patient {other}; one cell in two "
                        "patients can leak between training and test. Remove the copy or the symlink",
                    )
                )
            first = seen.setdefault(check.pixels, check.path)
            duplicate = first != check.path
            if duplicate:
                action = "dropped" if drop_duplicates else "kept (drop_duplicate_images: false)"
                cohort.problems.append(
                    Problem(
                        "duplicate_image",
                        str(check.path),
                        f"patient {patient.id}: same content as {first.name}; {action}",
                        severity="warning",
                    )
                )
            keep.append(not (duplicate and drop_duplicates))
        patient.digests = digests
        patient.keep_images(keep)
    emptied = [p for p in cohort.patients if not p.images]
    for p in emptied:
        cohort.problems.append(
            Problem("empty_bag", f"patient {p.id}", "no readable image left; patient left out", "warning")
        )
    if emptied:
        cohort.set_patients([p for p in cohort.patients if p.images])


def check_cellset_images(cells: CellSet, progress: bool = True) -> None:
    keep = []
    for check in check_files(cells.images, progress):
        if check.error is not None:
            cells.problems.append(_unreadable(check, "cell"))
        keep.append(check.error is None)
    cells.images = [p for p, k in zip(cells.images, keep) if k]
    cells.labels = [c for c, k in zip(cells.labels, keep) if k]


def load(path: str | Path, options: DataOptions | None = None, progress: bool = True) -> Cohort | CellSet:
    """Read any layout and check its images; problems are recorded on the result, never raised."""
    options = options or DataOptions()
    data = read(path, options)
    if options.check_images:
        if isinstance(data, Cohort):
            check_cohort_images(data, options.drop_duplicate_images, progress)
        else:
            check_cellset_images(data, progress)
    return data


def load_cohort(path: str | Path, options: DataOptions | None = None, progress: bool = True) -> Cohort:
    """A checked cohort of patients; raises DataError (with every problem) when it cannot be used."""
    data = load(path, options, progress)
    if not isinstance(data, Cohort):
        raise DataError(
            [
                Problem(
                    "wrong_layout", str(path), f"is a {data.layout} data set (single cells), not a cohort of patients"
                )
            ]
        )
    if errors_in(data.problems):
        raise DataError(data.problems)
    if not data.patients:
        raise DataError(data.problems + [Problem("no_patients", str(path), "no usable patient was found")])
    warn_skipped(data.problems)
    return data


def holds_images(folder: Path) -> bool:
    """Whether ``folder`` directly holds cell images (a patient folder, not a data set)."""
    return folder.is_dir() and any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def load_patients(
    paths: Sequence[str | Path],
    options: DataOptions | None = None,
    attributes_csv: str | Path | None = None,
    progress: bool = True,
) -> Cohort:
    """Patients to predict: one data set in any layout (labels optional), or loose patient folders of
    images (id = folder name; attributes from ``attributes_csv``). Unreadable images are skipped, with a
    warning problem naming each; a patient with none left is left out."""
    folders = [Path(p) for p in paths]
    if not folders:
        raise ValueError("give a data set or one or more patient folders")
    if len(folders) == 1 and not holds_images(folders[0]):
        if attributes_csv is not None:
            raise ValueError("--attributes FILE is for loose patient folders; a data set brings its own table (--csv)")
        return load_cohort(folders[0], options, progress)
    options = options or DataOptions()
    cohort = cohort_from_folders(folders, attributes_csv, options)
    if options.check_images:
        check_cohort_images(cohort, drop_duplicates=False, progress=progress)
    if errors_in(cohort.problems):
        raise DataError(cohort.problems)
    if not cohort.patients:
        raise DataError(cohort.problems + [Problem("no_patients", str(folders[0]), "no patient has a readable image")])
    warn_skipped(cohort.problems)
    return cohort
