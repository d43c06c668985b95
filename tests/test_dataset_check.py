"""The dataset checker on the hostile corpus (tests/helpers/hostile_corpus.py):
each case's verdict and the file its message names, the fast check of
tools/train.py, the command line tool and its JSON report, and that no input
file is ever modified."""
import copy
import json

import pytest
from helpers.hostile_corpus import build_corpus, file_hashes, tiny_config
from helpers.paths import REPO_ROOT, shared_data_dir
from helpers.tiny_training import run_tool

from ddetr_plugin.datasets.dataset_check import (KINDS, DatasetCheckError,
                                                 check_before_training,
                                                 check_config, has_errors)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp('hostile')
    cases = build_corpus(root, shared_data_dir('bccd', 'BCCD', 'JPEGImages'))
    return root, {case.name: case for case in cases}, file_hashes(root)


CASE_NAMES = [
    'zero_byte', 'truncated', 'not_an_image', 'missing_file', 'nan_box',
    'string_box', 'unknown_category', 'duplicate_image_id',
    'duplicate_annotation_id', 'orphan_annotation',
    'missing_annotations_key', 'malformed_json', 'empty_dataset',
    'missing_annotation_file', 'grayscale', 'rgba_png', 'png_16bit',
    'cmyk_jpeg', 'exif_rotated', 'one_pixel', 'huge_image', 'no_boxes',
    'boxes_outside', 'zero_size_box', 'negative_size_box', 'size_mismatch',
    'crowd_only', 'many_boxes', 'foreign_category'
]


def test_corpus_covers_every_case(corpus):
    _, cases, _ = corpus
    assert sorted(cases) == sorted(CASE_NAMES)
    assert len(cases) >= 25


def _config(root, name):
    return tiny_config(root, root / 'cases' / f'{name}.json')


@pytest.mark.parametrize('name', CASE_NAMES)
def test_checker_verdict_names_the_file(corpus, name):
    root, cases, hashes = corpus
    case = cases[name]
    (report, ) = check_config(_config(root, name), ('train', ),
                              progress=False)
    problems = report.by_kind()
    if case.kind is None:  # a valid dataset, however unusual
        assert problems == {}
        assert report.images_decoded == 1
    else:
        assert case.kind in problems, report.problems
        if case.file:
            assert any(case.file in p.describe() for p in problems[case.kind])
        expect_error = KINDS[case.kind][0] == 'error'
        assert has_errors([report]) is expect_error
    assert file_hashes(root) == hashes  # (c) nothing written to the inputs


@pytest.mark.parametrize('name', CASE_NAMES)
def test_fast_check_before_training(corpus, name):
    """What tools/train.py does before the first iteration: refuse, naming
    the file, on every error the fast check can see; start otherwise."""
    root, cases, _ = corpus
    case = cases[name]
    refuses = case.kind is not None and KINDS[case.kind][0] == 'error' \
        and case.fast
    cfg = _config(root, name)
    if refuses:
        with pytest.raises(DatasetCheckError) as info:
            check_before_training(cfg)
        assert case.kind in str(info.value)
        assert (case.file or 'image id 99') in str(info.value)
    else:
        reports = check_before_training(cfg)
        assert reports[0].images_decoded == 0  # nothing decoded


def test_warnings_say_what_training_does(corpus):
    root, _, _ = corpus
    (report, ) = check_config(tiny_config(root, root / 'mixed.json'),
                              ('train', ), progress=False)
    messages = {p.kind: p.message for p in report.problems}
    assert 'trained as a negative' in messages['image_without_boxes']
    assert 'rotates' in messages['exif_orientation']
    assert 'num_queries=100' in messages['more_objects_than_queries']
    assert 'dropped' in messages['degenerate_box']
    assert 'clipped' in messages['box_partly_outside']
    modes = [p.message for p in report.problems if p.kind == 'non_rgb_image']
    assert any(m.startswith('CMYK') for m in modes)
    assert any(m.startswith('16-bit') for m in modes)
    assert any(m.startswith('RGBA') for m in modes)
    assert any(m.startswith('grayscale') for m in modes)
    assert all('(480, 640, 3)' in m for m in modes)  # always 3 channels


def test_hybrid_matching_repeats_beyond_its_queries_are_reported(corpus):
    """With hybrid matching, the check counts each image's objects times
    ``k_one2many`` against ``num_queries_one2many`` (a warning: training
    matches what fits)."""
    root, _, _ = corpus
    cfg = _config(root, 'many_boxes')
    cfg.model.update(type='HybridDeformableDETR', num_queries_one2many=300,
                     k_one2many=6)
    (report, ) = check_config(cfg, ('train', ), decode=False)
    (problem, ) = report.by_kind()['more_repeats_than_one2many_queries']
    assert problem.message.startswith(
        '500 objects x k_one2many=6 > num_queries_one2many=300')
    assert problem.file == 'clean.jpg'
    cfg.model.num_queries_one2many = 3000
    (report, ) = check_config(cfg, ('train', ), decode=False)
    assert 'more_repeats_than_one2many_queries' not in report.by_kind()


@pytest.mark.parametrize('detector', ['DINO', 'DNDeformableDETR'])
def test_objects_beyond_the_denoising_queries_are_reported(corpus, detector):
    """With dynamic denoising groups (DINO, or denoising on Deformable
    DETR), an image with more objects than ``num_dn_queries`` is named (a
    warning: one larger group); the detector's default groups count."""
    root, _, _ = corpus
    cfg = _config(root, 'many_boxes')
    cfg.model.update(type=detector)
    (report, ) = check_config(cfg, ('train', ), decode=False)
    assert 'more_objects_than_denoising_queries' in report.by_kind()
    cfg.model.update(dn_cfg=dict(
        group_cfg=dict(dynamic=True, num_dn_queries=100)))
    (report, ) = check_config(cfg, ('train', ), decode=False)
    (problem, ) = report.by_kind()['more_objects_than_denoising_queries']
    assert problem.message.startswith(
        '500 objects > dn_cfg.group_cfg.num_dn_queries=100: a batch with '
        'this image gets one denoising group of 1000 queries')
    cfg.model.dn_cfg.group_cfg = dict(dynamic=False, num_groups=2)
    (report, ) = check_config(cfg, ('train', ), decode=False)
    assert 'more_objects_than_denoising_queries' not in report.by_kind()


def test_filter_empty_gt_is_reported(corpus):
    root, _, _ = corpus
    cfg = _config(root, 'no_boxes')
    cfg.train_dataloader.dataset.filter_cfg = dict(filter_empty_gt=True)
    (report, ) = check_config(cfg, ('train', ), decode=False)
    (problem, ) = report.problems
    assert 'filter_empty_gt=True' in problem.message


def test_num_classes_mismatch_is_an_error(corpus):
    root, _, _ = corpus
    cfg = _config(root, 'huge_image')
    cfg.model.bbox_head.num_classes = 4
    with pytest.raises(DatasetCheckError, match=r'num_classes=4 .* has 3'):
        check_before_training(cfg)


def test_command_line_tool(corpus, tmp_path):
    """check_dataset.py: report grouped by kind with a summary table,
    --out JSON, exit status 1 on errors, 0 on warnings only."""
    root, _, hashes = corpus
    tool = REPO_ROOT / 'tools' / 'analysis_tools' / 'check_dataset.py'
    config = tmp_path / 'tiny.py'
    cfg = tiny_config(root, root / 'cases' / 'truncated.json')
    cfg.val_dataloader = copy.deepcopy(cfg.train_dataloader)
    cfg.val_dataloader.dataset.ann_file = str(root / 'cases' / 'cmyk_jpeg'
                                              '.json')
    cfg.dump(config)
    out = tmp_path / 'report.json'
    proc = run_tool(tool, config, '--out', out, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert 'ERROR unreadable_image' in proc.stdout
    assert 'truncated.jpg' in proc.stdout
    assert 'WARNING non_rgb_image' in proc.stdout
    assert '1 error(s), 1 warning(s)' in proc.stdout
    report = json.loads(out.read_text())
    assert report['errors'] is True
    assert [s['split'] for s in report['splits']] == ['train', 'val']
    assert report['splits'][0]['counts'] == {'unreadable_image': 1}
    proc = run_tool(tool, config, '--split', 'val', check=False)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert file_hashes(root) == hashes
