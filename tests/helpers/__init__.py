"""Helpers of the test suite (``tests/`` is on ``sys.path``: pytest puts it
there for the test modules, and ``tiny_training.tool_env`` for the tool
subprocesses), imported as ``from helpers.paths import REPO_ROOT``:

* :mod:`.paths`: the repository, its configs and tools, the shared real
  data (:func:`~.paths.shared_data_dir`), BCCD's classes;
* :mod:`.msda_inputs`: random inputs of the MSDA operator;
* :mod:`.ddetr_model_utils`: mmdet's and our detectors built alike;
* :mod:`.tiny_training`: a tiny BCCD training set-up run through the real
  tools in subprocesses;
* :mod:`.fault_injection`: hooks that kill or poison a training
  subprocess (``custom_imports=['helpers.fault_injection']``);
* :mod:`.hostile_corpus`: the hostile-data corpus of the dataset tests;
* :mod:`.cpu_variants`: which CPU kernel variants this machine runs;
* :mod:`.processes`: process trees of torchrun runs, killed and waited on;
* :mod:`.state_probe` and :mod:`.autocast_probe`: hooks loaded into
  training subprocesses that record random states and autocast use.
"""
