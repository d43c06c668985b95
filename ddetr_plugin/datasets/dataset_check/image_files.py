"""The image check: every image decoded by the config's own loading
transform (so a file is "readable" exactly when training can read it), plus
Pillow's header for the colour mode and EXIF orientation, on a thread pool
(``tools/analysis_tools/check_dataset.py``; the slow part of the check)."""
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, List, Optional, Tuple

from mmcv.transforms import LoadImageFromFile
from mmengine.utils import ProgressBar
from PIL import Image

from .report import SplitReport
from .specs import ImageEntry

EXIF_ORIENTATION = 0x0112
MIN_IMAGE_SIDE = 32  # the coarsest backbone stride of the configs
# Pillow mode -> what a 3-channel 8-bit decode (color_type='color') does
MODE_CONVERSIONS = {
    '1': 'black-and-white: loaded as 3 equal channels',
    'L': 'grayscale: loaded as 3 equal channels',
    'LA': 'grayscale with alpha: alpha dropped, 3 equal channels',
    'P': 'palette: expanded to colours',
    'PA': 'palette with alpha: expanded to colours, alpha dropped',
    'RGBA': 'RGBA: alpha dropped (transparent pixels keep their colour)',
    'I;16': '16-bit: scaled to 8 bits (value / 256)',
    'I;16B': '16-bit: scaled to 8 bits (value / 256)',
    'I': '32-bit integer: scaled to 8 bits',
    'F': '32-bit float: converted to 8 bits',
    'CMYK': 'CMYK: converted to RGB by the decoder (no ICC profile)',
    'YCbCr': 'YCbCr: converted to RGB by the decoder',
}


def _png_bit_depth(path: str) -> int:
    """Bits per channel from a PNG's IHDR chunk (byte 24 of the file)."""
    with open(path, 'rb') as f:
        header = f.read(25)
    return header[24] if len(header) == 25 else 8


def inspect_image(loader: LoadImageFromFile,
                  entry: ImageEntry) -> List[Tuple[str, str]]:
    """Decode one image with the config's loading transform and read its
    header with Pillow.

    Args:
        loader (LoadImageFromFile): the config's (possibly our skipping
            subclass: its raising parent method is called).
        entry (ImageEntry): the image and its size in the json.

    Returns:
        list[tuple[str, str]]: ``(kind, message)`` of what was found:
        ``unreadable_image``, ``size_mismatch``, ``exif_orientation``,
        ``non_rgb_image``, ``tiny_image``.
    """
    try:
        results = LoadImageFromFile.transform(loader,
                                              dict(img_path=entry.path))
    except Exception as error:  # any decoder failure is the finding
        return [('unreadable_image', f'{type(error).__name__}: {error}')]
    if results is None:
        return [('unreadable_image', 'the loader returned no image')]
    found = []
    height, width = results['img'].shape[:2]
    mode, orientation, bit_depth = None, 1, 8
    try:
        with Image.open(entry.path) as image:
            mode = image.mode
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            if image.format == 'PNG':  # Pillow reads 16-bit RGB as 8-bit
                bit_depth = _png_bit_depth(entry.path)
    except Exception:  # noqa: S110 decodable by OpenCV but not Pillow
        pass
    color_type = loader.color_type
    if orientation != 1:
        applied = 'ignore_orientation' not in color_type and \
            color_type != 'unchanged'
        found.append(('exif_orientation', f'EXIF orientation {orientation}: '
                      + (f'the loader (color_type={color_type!r}) rotates/'
                         f'flips it to {width}x{height}; boxes must be '
                         'drawn on the rotated image' if applied else
                         f'ignored by the loader (color_type={color_type!r})'
                         )))
    if bit_depth == 16 or (mode is not None and mode != 'RGB'):
        what = MODE_CONVERSIONS['I;16'] if bit_depth == 16 else \
            MODE_CONVERSIONS.get(mode, f'mode {mode}: converted by the '
                                 'decoder')
        found.append(('non_rgb_image', f'{what} (loader color_type='
                      f'{color_type!r}, loaded shape '
                      f'{tuple(results["img"].shape)})'))
    if (width, height) != (entry.width, entry.height):
        found.append(('size_mismatch', f'json says {entry.width}x'
                      f'{entry.height}, the loaded image is {width}x{height}'
                      ': boxes are clipped to the loaded image and misplaced '
                      'if the file was resized'))
    if min(width, height) < MIN_IMAGE_SIDE:
        found.append(('tiny_image', f'{width}x{height}: smaller than the '
                      f'backbone stride {MIN_IMAGE_SIDE}; Resize scales it '
                      'up'))
    return found


def check_image_files(entries: Iterable[ImageEntry], loader: LoadImageFromFile,
                      report: SplitReport, progress: bool = True,
                      num_threads: Optional[int] = None) -> None:
    """Decode every image (see :func:`inspect_image`) on a thread pool
    (OpenCV decodes without the GIL), in order, with a progress bar on
    stderr. Files already reported missing or empty are not read."""
    skip = {p.file for p in report.problems
            if p.kind in ('missing_file', 'unreadable_image')}
    entries = [e for e in entries if e.file_name not in skip]
    bar = ProgressBar(len(entries), file=sys.stderr) if progress else None
    with ThreadPoolExecutor(num_threads or os.cpu_count()) as pool:
        for entry, found in zip(
                entries, pool.map(lambda e: inspect_image(loader, e),
                                  entries)):
            for kind, message in found:
                report.add(kind, message, file=entry.file_name,
                           image_id=entry.image_id)
            if bar:
                bar.update()
    if bar:
        sys.stderr.write('\n')
    report.images_decoded = len(entries)
