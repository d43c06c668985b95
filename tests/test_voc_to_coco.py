"""VOC -> COCO conversion on the real BCCD data, and its error handling."""
import json
import warnings
import xml.etree.ElementTree as ET

import pytest
from helpers.paths import BCCD_CLASSES, REPO_ROOT, shared_data_dir
from helpers.tiny_training import run_tool

from ddetr_plugin.datasets.voc_to_coco import (DroppedBoxWarning,
                                               convert_voc_split,
                                               convert_voc_to_coco)

SPLIT_SIZES = dict(train=205, val=87, test=72)
DEGENERATE = {'BloodImage_00338.xml', 'BloodImage_00343.xml'}
TOTAL_OBJECTS = 4888


@pytest.fixture(scope='module')
def bccd_root():
    return shared_data_dir('bccd', 'BCCD')


@pytest.fixture(scope='module')
def converted(bccd_root, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('bccd_coco')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        stats = convert_voc_to_coco(str(bccd_root), str(out_dir),
                                    classes=BCCD_CLASSES)
    cocos = {}
    for split in SPLIT_SIZES:
        with open(out_dir / 'annotations' / f'{split}.json') as f:
            cocos[split] = json.load(f)
    warned = [str(w.message) for w in caught
              if issubclass(w.category, DroppedBoxWarning)]
    return out_dir, stats, cocos, warned


def _voc_objects(xml_path):
    """(name, [xmin, ymin, xmax, ymax]) of every object, read directly."""
    root = ET.parse(xml_path).getroot()
    return [(o.findtext('name'),
             [float(o.find('bndbox').findtext(k))
              for k in ('xmin', 'ymin', 'xmax', 'ymax')])
            for o in root.iter('object')]


def test_split_sizes_and_categories(converted):
    _, stats, cocos, _ = converted
    for split, size in SPLIT_SIZES.items():
        coco = cocos[split]
        assert len(coco['images']) == size == stats[split]['images']
        assert [(c['id'], c['name']) for c in coco['categories']] == \
            [(1, 'RBC'), (2, 'WBC'), (3, 'Platelets')]
        img_ids = [img['id'] for img in coco['images']]
        ann_ids = [ann['id'] for ann in coco['annotations']]
        assert len(set(img_ids)) == len(img_ids)
        assert len(set(ann_ids)) == len(ann_ids)
        assert len(ann_ids) == stats[split]['boxes_kept']
        assert {a['image_id'] for a in coco['annotations']} <= set(img_ids)
    names = [{img['file_name'] for img in cocos[s]['images']}
             for s in SPLIT_SIZES]
    assert not (names[0] & names[1] or names[0] & names[2]
                or names[1] & names[2]), 'splits overlap'


def test_degenerate_boxes_dropped_and_reported(converted):
    _, stats, cocos, warned = converted
    dropped = [d for s in SPLIT_SIZES for d in stats[s]['dropped']]
    assert {d['xml'].rsplit('/', 1)[-1] for d in dropped} == DEGENERATE
    assert sum(stats[s]['boxes_dropped'] for s in SPLIT_SIZES) == 2
    assert len(warned) == 2
    for name in DEGENERATE:
        assert any(name in msg for msg in warned), warned
    kept = sum(stats[s]['boxes_kept'] for s in SPLIT_SIZES)
    assert kept + 2 == TOTAL_OBJECTS
    for coco in cocos.values():
        for ann in coco['annotations']:
            x, y, w, h = ann['bbox']
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert ann['area'] == pytest.approx(w * h)


def test_boxes_match_the_xml(converted, bccd_root):
    """Every box of two images against the xml: mmdet's VOC convention."""
    _, _, cocos, _ = converted
    coco = cocos['train']
    for img in coco['images'][:2]:
        objects = _voc_objects(bccd_root / 'Annotations' /
                               img['file_name'].replace('.jpg', '.xml'))
        anns = [a for a in coco['annotations'] if a['image_id'] == img['id']]
        assert len(anns) == len(objects)
        for ann, (name, (x1, y1, x2, y2)) in zip(anns, objects):
            assert BCCD_CLASSES[ann['category_id'] - 1] == name
            assert ann['bbox'] == [x1 - 1, y1 - 1, x2 - x1, y2 - y1]
            assert ann['iscrowd'] == 0
    # a hand-checked one: BloodImage_00001.xml, first object WBC
    # xmin=68 ymin=315 xmax=286 ymax=480
    first = coco['annotations'][0]
    assert coco['images'][0]['file_name'] == 'BloodImage_00001.jpg'
    assert first['bbox'] == [67, 314, 218, 165] and first['category_id'] == 2
    assert (coco['images'][0]['width'], coco['images'][0]['height']) == \
        (640, 480)


def test_mmdet_coco_dataset_reads_it(converted, bccd_root):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    out_dir, _, cocos, _ = converted
    for split, size in SPLIT_SIZES.items():
        ds = CocoDataset(
            data_root='',
            ann_file=str(out_dir / 'annotations' / f'{split}.json'),
            data_prefix=dict(img=str(bccd_root / 'JPEGImages') + '/'),
            metainfo=dict(classes=BCCD_CLASSES),
            pipeline=[LoadImageFromFile()], filter_cfg=None,
            test_mode=False)
        assert len(ds) == size
        assert ds.metainfo['classes'] == BCCD_CLASSES
        assert ds.cat2label == {1: 0, 2: 1, 3: 2}
        infos = [ds.get_data_info(i) for i in range(len(ds))]
        missing = [i['img_path'] for i in infos
                   if not (bccd_root / 'JPEGImages').joinpath(
                       i['img_path'].rsplit('/', 1)[-1]).is_file()]
        assert not missing
        assert sum(len(i['instances']) for i in infos) == \
            len(cocos[split]['annotations'])
    # last split: box and label back in xyxy, and a real image read
    ann = cocos[split]['annotations'][0]
    x, y, w, h = ann['bbox']
    inst = infos[0]['instances'][0]
    assert inst['bbox'] == [x, y, x + w, y + h]
    assert inst['bbox_label'] == ann['category_id'] - 1
    assert ds[0]['img'].shape == (480, 640, 3)


def test_cli(bccd_root, tmp_path):
    res = run_tool(
        REPO_ROOT / 'tools' / 'dataset_converters' / 'voc_to_coco.py',
        bccd_root, tmp_path, '--splits', 'val', 'test')
    assert 'val: 87 images, 1137 boxes kept' in res.stdout
    assert '1 dropped' in res.stdout and '0 dropped' in res.stdout
    assert 'BloodImage_00338.xml' in res.stdout
    assert sorted(p.name for p in (tmp_path / 'annotations').iterdir()) == \
        ['test.json', 'val.json']


# --- error handling on a small synthetic VOC folder ------------------------

def _obj(name, box, difficult=0):
    xmin, ymin, xmax, ymax = box
    return (f'<object><name>{name}</name><difficult>{difficult}</difficult>'
            f'<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>'
            f'<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>')


def _make_voc(root, objects_by_image, split='train'):
    for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for img_id, objects in objects_by_image.items():
        (root / 'JPEGImages' / f'{img_id}.jpg').write_bytes(b'not read')
        (root / 'Annotations' / f'{img_id}.xml').write_text(
            '<annotation><size><width>100</width><height>50</height>'
            f'</size>{"".join(objects)}</annotation>')
    (root / 'ImageSets' / 'Main' / f'{split}.txt').write_text(
        '\n'.join(objects_by_image) + '\n')
    return root


def test_difficult_and_out_of_image(tmp_path):
    root = _make_voc(tmp_path, {'a': [
        _obj('RBC', (1, 1, 100, 50)),           # the whole image: kept
        _obj('WBC', (10, 10, 20, 20), difficult=1),
        _obj('RBC', (90, 10, 102, 20)),         # x2 = 101 > 100: dropped
        _obj('RBC', (30, 20, 40, 20)),          # zero height: dropped
    ]})
    with pytest.warns(DroppedBoxWarning) as record:
        coco, stats = convert_voc_split(str(root), 'train', BCCD_CLASSES)
    assert [a['bbox'] for a in coco['annotations']] == \
        [[0, 0, 99, 49], [9, 9, 10, 10]]
    assert [a['iscrowd'] for a in coco['annotations']] == [0, 1]
    assert stats['boxes_dropped'] == 2 and stats['crowd'] == 1
    msgs = [str(r.message) for r in record]
    assert all('a.xml' in m for m in msgs)
    assert any('xmax=102' in m and 'outside' in m for m in msgs)
    assert any('ymin=20' in m and 'non-positive' in m for m in msgs)


def test_unknown_class_names_file_and_name(tmp_path):
    root = _make_voc(tmp_path, {'a': [_obj('Neutrophil', (1, 1, 5, 5))]})
    with pytest.raises(ValueError, match=r"a\.xml.*'Neutrophil'"):
        convert_voc_split(str(root), 'train', BCCD_CLASSES)
    # the same file converts with that class listed
    coco, _ = convert_voc_split(str(root), 'train', classes=['Neutrophil'])
    assert coco['categories'] == [
        dict(id=1, name='Neutrophil', supercategory='none')]


def test_missing_files_are_named(tmp_path):
    root = _make_voc(tmp_path, {'a': [_obj('RBC', (1, 1, 5, 5))]})
    with pytest.raises(FileNotFoundError, match=r'ImageSets/Main/val\.txt'):
        convert_voc_split(str(root), 'val', BCCD_CLASSES)
    (root / 'Annotations' / 'a.xml').unlink()
    with pytest.raises(FileNotFoundError, match=r'Annotations/a\.xml'):
        convert_voc_split(str(root), 'train', BCCD_CLASSES)
    (root / 'JPEGImages' / 'a.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=r'JPEGImages/a\.jpg'):
        convert_voc_split(str(root), 'train', BCCD_CLASSES)
    with pytest.raises(FileNotFoundError, match='nowhere'):
        convert_voc_to_coco(str(tmp_path / 'nowhere'), str(tmp_path),
                            classes=BCCD_CLASSES)
    with pytest.raises(TypeError, match='classes'):  # no demo default
        convert_voc_to_coco(str(root), str(tmp_path))


def test_bad_fields_are_named(tmp_path):
    root = _make_voc(tmp_path, {'a': [_obj('RBC', ('x1', 1, 5, 5))]})
    with pytest.raises(ValueError, match=r"a\.xml.*<xmin>.*'x1'"):
        convert_voc_split(str(root), 'train', BCCD_CLASSES)
    (root / 'Annotations' / 'a.xml').write_text('<annotation><size>')
    with pytest.raises(ValueError, match=r'a\.xml: malformed xml'):
        convert_voc_split(str(root), 'train', BCCD_CLASSES)
