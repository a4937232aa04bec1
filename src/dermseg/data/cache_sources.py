"""Is a prepared cache up to date? Its sources' stamps compared with the data folder's files.

Every source file of a sample (image, one mask per label, lesion mask) is
stamped with its size and mtime when the cache is prepared. :func:`open_cache` stats
them again (no decoding) and refuses a stale cache, naming the first file added,
removed or changed; :func:`~dermseg.data.cache.prepare_cache` uses the same stamps
to redo only the samples concerned.
"""

from __future__ import annotations

from pathlib import Path

from dermseg.data.cache_manifest import CacheManifest, FileStamp, read_manifest
from dermseg.data.layout import IsicSample, discover
from dermseg.errors import DataError


def sample_stamps(sample: IsicSample, root: Path) -> tuple[FileStamp | None, ...]:
    """Stamps of a sample's image, C label masks and lesion mask (as :attr:`CachedSample.stamps`)."""
    image = FileStamp.of(sample.image_path, root)
    masks = (FileStamp.of(p, root) if p is not None else None for p in sample.mask_paths)
    lesion = FileStamp.of(sample.lesion_mask_path, root) if sample.lesion_mask_path is not None else None
    return (image, *masks, lesion)


def _difference(
    old: tuple[FileStamp | None, ...], new: tuple[FileStamp | None, ...], root: Path
) -> tuple[Path, str] | None:
    """The first source file that differs between two stamp tuples, with what changed."""
    for o, n in zip(old, new, strict=True):
        if o == n:
            continue
        if o is None and n is not None:
            return root / n.path, "added since the cache was prepared"
        if n is None and o is not None:
            return root / o.path, "removed since the cache was prepared"
        assert o is not None and n is not None
        if o.path != n.path:
            return root / n.path, f"replaces {o.path} since the cache was prepared"
        what = "size" if o.size != n.size else "modification time"
        return root / n.path, f"changed since the cache was prepared ({what} differs)"
    return None


def check_sources(manifest: CacheManifest, data_dir: Path) -> None:
    """Raise DataError naming the first source file that differs from the cache (the data folder
    is read with the cache's label set)."""
    layout = discover(data_dir, manifest.labels)
    cached = {(s.split, s.isic_id): s for s in manifest.samples}
    current = {(name, s.isic_id): s for name, split in layout.splits.items() for s in split.samples}
    hint = manifest.rebuild_hint().replace(manifest.data_dir, str(data_dir), 1)
    for key, sample in current.items():
        if key not in cached:
            raise DataError(
                f"image not in the cache (added since it was prepared); {hint}", sample.image_path
            )
        diff = _difference(cached[key].stamps, sample_stamps(sample, data_dir), data_dir)
        if diff is not None:
            raise DataError(f"{diff[1]}; {hint}", diff[0])
    for key, entry in cached.items():
        if key not in current:
            raise DataError(
                f"image removed since the cache was prepared; {hint}", data_dir / entry.image.path
            )


def open_cache(cache_dir: str | Path, data_dir: str | Path | None = None) -> CacheManifest:
    """Open a prepared cache, checking its files and, when ``data_dir`` is given, its sources.

    Args:
        cache_dir: folder written by :func:`~dermseg.data.cache.prepare_cache`.
        data_dir: the data folder; every image, mask and lesion mask is stat'ed (no
            decoding) and compared with the manifest's size and mtime.

    Returns:
        The manifest.

    Raises:
        DataError: not a cache, a data file missing or truncated, or (with ``data_dir``)
            a source image or mask (lesion masks included) added, removed or changed
            since; the message names the file and says how to rebuild.
    """
    manifest = read_manifest(Path(cache_dir))
    if data_dir is not None:
        check_sources(manifest, Path(data_dir))
    return manifest
