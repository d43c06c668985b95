"""What the dataset checker found: the kinds of problem (which are errors,
which warnings), one report per checked split, and its text and JSON forms.

Errors stop training before its first iteration (``tools/train.py``) and make
``tools/analysis_tools/check_dataset.py`` exit with status 1; warnings are
what training copes with (and how), reported so nobody is surprised.
"""
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

ERROR = 'error'
WARNING = 'warning'

# kind -> (severity, what it means); the order is the report's order
KINDS: Dict[str, tuple] = {
    # the dataset cannot be read as it is
    'missing_annotation_file': (ERROR, 'annotation file missing'),
    'malformed_json': (ERROR, 'annotation file is not valid JSON'),
    'missing_key': (ERROR, 'images/annotations/categories missing'),
    'no_images': (ERROR, 'dataset without images'),
    'invalid_image_entry': (ERROR, 'image entry without id/file_name/size'),
    'duplicate_image_id': (ERROR, 'two images share an id'),
    'missing_file': (ERROR, 'image file missing'),
    'unreadable_image': (ERROR, 'image cannot be decoded'),
    'invalid_annotation': (ERROR, 'annotation without id/image_id/bbox/...'),
    'duplicate_annotation_id': (ERROR, 'two annotations share an id'),
    'orphan_annotation': (ERROR, 'annotation of an image id not in images'),
    'unknown_category': (ERROR, 'category id not in categories'),
    'class_not_in_categories': (ERROR, 'a config class has no category'),
    'invalid_box': (ERROR, 'box values not 4 finite numbers'),
    'num_classes_mismatch': (ERROR, 'head num_classes != dataset classes'),
    # training copes; the message says how
    'unsupported_dataset': (WARNING, 'not a COCO json dataset: not checked'),
    'size_mismatch': (WARNING, 'image size in the JSON differs from file'),
    'exif_orientation': (WARNING, 'EXIF orientation'),
    'non_rgb_image': (WARNING, 'grayscale/RGBA/16-bit/CMYK/palette image'),
    'tiny_image': (WARNING, 'image side under 32 pixels'),
    'box_partly_outside': (WARNING, 'box partly outside the image (clipped)'),
    'box_outside': (WARNING, 'box fully outside the image (dropped)'),
    'degenerate_box': (WARNING, 'box width or height < 1 pixel (dropped)'),
    'category_not_in_classes': (WARNING, 'category not among config classes'),
    'image_without_boxes': (WARNING, 'image without boxes'),
    'crowd_only_image': (WARNING, 'image with crowd boxes only'),
    'more_objects_than_queries': (WARNING, 'more objects than num_queries'),
    'more_repeats_than_one2many_queries': (
        WARNING, 'objects x k_one2many > num_queries_one2many'),
    'more_objects_than_denoising_queries': (
        WARNING, 'objects > DINO num_dn_queries (one larger group)'),
}


@dataclass(frozen=True)
class Problem:
    """One finding.

    Args:
        kind (str): a key of :data:`KINDS`.
        message (str): what is wrong and what training does about it.
        file (str, optional): the image or annotation file concerned.
        image_id, annotation_id (optional): ids in the annotation file.
    """
    kind: str
    message: str
    file: Optional[str] = None
    image_id: Any = None
    annotation_id: Any = None

    @property
    def severity(self) -> str:
        """``'error'`` or ``'warning'``."""
        return KINDS[self.kind][0]

    def describe(self) -> str:
        """One line: ``file [image id, annotation id]: message``."""
        where = [f'image id {self.image_id!r}'] if self.image_id is not None \
            else []
        if self.annotation_id is not None:
            where.append(f'annotation id {self.annotation_id!r}')
        head = self.file or ''
        if where:
            head += f' [{", ".join(where)}]'
        return f'{head}: {self.message}' if head else self.message


@dataclass
class SplitReport:
    """The findings on one dataset (one dataloader split) of a config.

    Args:
        split (str): ``'train'``, ``'val'``, ``'test'`` or ``'config'``.
        ann_file (str, optional): the annotation file read.
        num_images (int): image entries read.
        num_annotations (int): annotation entries read.
        images_decoded (int): images decoded (0 for the fast check).
        problems (list[Problem]): every finding, in the order found.
    """
    split: str
    ann_file: Optional[str] = None
    num_images: int = 0
    num_annotations: int = 0
    images_decoded: int = 0
    problems: List[Problem] = field(default_factory=list)

    def add(self, kind: str, message: str, **where) -> None:
        """Record a :class:`Problem` (``where``: file, image_id,
        annotation_id).

        Raises:
            KeyError: ``kind`` is not in :data:`KINDS`.
        """
        if kind not in KINDS:
            raise KeyError(f'unknown problem kind {kind!r}')
        self.problems.append(Problem(kind, message, **where))

    def count(self, severity: str) -> int:
        """Number of problems of ``severity``."""
        return sum(p.severity == severity for p in self.problems)

    def by_kind(self) -> Dict[str, List[Problem]]:
        """Problems grouped by kind, in :data:`KINDS` order."""
        groups = defaultdict(list)
        for problem in self.problems:
            groups[problem.kind].append(problem)
        return {kind: groups[kind] for kind in KINDS if kind in groups}

    def to_dict(self) -> dict:
        """JSON-ready form, with per-kind counts and every problem."""
        return dict(
            split=self.split,
            ann_file=self.ann_file,
            num_images=self.num_images,
            num_annotations=self.num_annotations,
            images_decoded=self.images_decoded,
            errors=self.count(ERROR),
            warnings=self.count(WARNING),
            counts={k: len(v) for k, v in self.by_kind().items()},
            problems=[dict(asdict(p), severity=p.severity)
                      for p in self.problems])


def has_errors(reports: List[SplitReport]) -> bool:
    """Whether any report holds an error."""
    return any(report.count(ERROR) for report in reports)


def format_reports(reports: List[SplitReport], max_listed: int = 10) -> str:
    """The reports as text: per split, each kind with its first
    ``max_listed`` problems, then one summary table of all splits."""
    lines = []
    for report in reports:
        source = f' ({report.ann_file})' if report.ann_file else ''
        lines.append(f'== {report.split}{source}: {report.num_images} '
                     f'images, {report.num_annotations} annotations, '
                     f'{report.images_decoded} images decoded')
        for kind, problems in report.by_kind().items():
            severity, title = KINDS[kind]
            lines.append(f'  {severity.upper()} {kind} ({title}): '
                         f'{len(problems)}')
            lines += [f'    {p.describe()}' for p in problems[:max_listed]]
            if len(problems) > max_listed:
                lines.append(f'    ... and {len(problems) - max_listed} more')
    lines += ['', f'{"split":<8} {"kind":<26} {"severity":<8} {"count":>6}']
    for report in reports:
        for kind, problems in report.by_kind().items():
            lines.append(f'{report.split:<8} {kind:<26} {KINDS[kind][0]:<8} '
                         f'{len(problems):>6}')
    errors = sum(r.count(ERROR) for r in reports)
    warnings = sum(r.count(WARNING) for r in reports)
    lines.append(f'{errors} error(s), {warnings} warning(s)')
    return '\n'.join(lines)
