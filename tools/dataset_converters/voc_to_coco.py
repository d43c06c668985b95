"""Convert a Pascal VOC dataset (e.g. BCCD) to COCO json.

Usage (from the repo root)::

    python tools/dataset_converters/voc_to_coco.py \
        ../shared/data/bccd/BCCD data/bccd \
        [--splits train val test] [--classes RBC WBC Platelets]

writes ``data/bccd/annotations/{train,val,test}.json``; images stay where
they are (config: ``data_prefix=dict(img='../shared/data/bccd/BCCD/
JPEGImages/')``). See ``ddetr_plugin/converters/voc_to_coco.py`` for the box
convention and what is dropped.
"""
from ddetr_plugin.converters.voc_to_coco import main

if __name__ == '__main__':
    main()
