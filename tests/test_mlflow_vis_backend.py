"""MLflow tracking with ``configs/_base_/runtime/mlflow.py`` and
``ResilientMLflowVisBackend``, against a real ``mlflow server`` (SQLite
store, temp artifact root, free port; ``helpers.mlflow_server``) and real
tiny trainings on BCCD images (``tools/train.py`` subprocesses):

* a run logs the resolved config as parameters, every loss and COCO metric
  (per-class AP included) with its step, the per-class PR-curve pictures of
  every validation, and at its end the logs, configs and the best
  checkpoint (only the best) as artifacts; read back with
  ``MlflowClient`` and compared with the local files;
* a tracking URI nobody listens on stops ``tools/train.py`` before training
  with one error naming the URI, in seconds (mlflow's own retries take
  about 4 minutes);
* a server killed between two epochs does not stop training: one warning,
  every metric of every epoch in the local ``scalars.json`` and
  TensorBoard, MLflow holding what came before the kill;
* (the backend in this process) logging resumes once a restarted server
  answers again, and a server that answers but is not MLflow's is the same
  clear error at the start.
"""
import hashlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mmcv
import numpy as np
import pytest
from helpers.mlflow_server import MLflowServer, require_mlflow
from helpers.paths import BCCD_CLASSES, REPO_ROOT
from helpers.processes import kill_tree
from helpers.tiny_training import (TOOLS, bccd_annotations, free_port,
                                   run_tool, scalar_records, start_tool,
                                   tool_env, write_tiny_config)

SNIPPET = REPO_ROOT / 'configs' / '_base_' / 'runtime' / 'mlflow.py'
#: the snippet's three wiring lines, as its header shows them
WIRING = '''
visualizer = dict(vis_backends=_base_.mlflow_vis_backends)
default_hooks = dict(pr_curves=_base_.mlflow_pr_curve_hook)
val_evaluator = _base_.mlflow_val_evaluator
'''


@pytest.fixture(autouse=True)
def _mlflow_installed():
    require_mlflow()


def _mlflow_config(folder: Path, max_epochs: int, extra: str = '') -> Path:
    """A tiny BCCD config (4 val images, 4 training images in 2
    iterations per epoch) with the MLflow snippet inherited beside it."""
    ann_file = bccd_annotations(folder, 4)
    tiny = write_tiny_config(folder / 'tiny.py', ann_file, batch_size=2,
                             train_images=4, max_epochs=max_epochs)
    config = folder / 'tiny_mlflow.py'
    config.write_text(f'_base_ = [{str(tiny)!r}, {str(SNIPPET)!r}]\n' +
                      WIRING + extra)
    return config


def _env(uri: str, experiment: str) -> dict:
    return tool_env(MLFLOW_TRACKING_URI=uri,
                    MLFLOW_EXPERIMENT_NAME=experiment)


def _only_run(client, experiment: str):
    (run, ) = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id])
    return run


def _all_artifacts(client, run_id: str, path=None) -> list:
    """Every artifact file of the run, recursively (paths)."""
    files = []
    for item in client.list_artifacts(run_id, path):
        files += (_all_artifacts(client, run_id, item.path) if item.is_dir
                  else [item.path])
    return files


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _local_series(work_dir: Path, key: str) -> dict:
    """step -> value of ``key`` in the run's ``scalars.json``."""
    return {r['step']: r[key] for r in scalar_records(work_dir) if key in r}


@pytest.mark.slow  # a server and/or a training run
def test_a_run_logs_params_metrics_pr_curves_and_best_checkpoint(tmp_path):
    from mlflow.tracking import MlflowClient
    config = _mlflow_config(tmp_path, max_epochs=2)
    work_dir = tmp_path / 'work'
    with MLflowServer(tmp_path / 'mlflow') as server:
        run_tool(TOOLS / 'train.py', config, '--work-dir', work_dir,
                 env=_env(server.uri, 'tiny'))
        client = MlflowClient(server.uri)
        run = _only_run(client, 'tiny')
        assert run.info.status == 'FINISHED'

        # the resolved config, flattened, as parameters
        params = run.data.params
        dumped = work_dir / 'tiny_mlflow.py'
        assert params['train_cfg.max_epochs'] == '2'
        assert params['model.type'] == 'DeformableDETR'
        assert params['model.transformer.num_queries'] == '20'
        assert params['val_evaluator.type'] == 'CocoMetricWithPRCurves'
        assert params['val_evaluator.classwise'] == 'True'
        assert params['work_dir'] == str(work_dir)
        assert len(params) > 100

        # every loss and metric, at the steps of the local scalars.json
        for key in ('loss', 'loss_cls', 'loss_bbox', 'lr', 'coco/bbox_mAP',
                    'coco/bbox_mAP_50',
                    *(f'coco/{name}_precision' for name in BCCD_CLASSES)):
            history = {m.step: m.value
                       for m in client.get_metric_history(run.info.run_id,
                                                          key)}
            local = _local_series(work_dir, key)
            assert history and history.keys() == local.keys(), key
            for step, value in local.items():
                assert history[step] == pytest.approx(value, rel=1e-6,
                                                      nan_ok=True), key
        assert sorted(_local_series(work_dir, 'coco/bbox_mAP')) == [1, 2]
        assert sorted(_local_series(work_dir, 'loss')) == [1, 2, 3, 4]

        # artifacts: configs, logs, scalars, PR curves, the best checkpoint
        artifacts = _all_artifacts(client, run.info.run_id)
        (log_dir, ) = [p for p in work_dir.iterdir() if p.is_dir()]
        best = sorted(work_dir.glob('best_coco_bbox_mAP_epoch_*.pth'))
        assert len(best) == 1 and (work_dir / 'epoch_2.pth').exists()
        expected = {
            'config.py', dumped.name, best[0].name,
            f'{log_dir.name}/{log_dir.name}.log',
            f'{log_dir.name}/vis_data/{log_dir.name}.json',
            f'{log_dir.name}/vis_data/scalars.json',
            f'{log_dir.name}/vis_data/config.py',
            'pr_curves/coco_bbox_pr_curves_epoch_1.png',
            'pr_curves/coco_bbox_pr_curves_epoch_2.png'
        }
        assert expected <= set(artifacts), sorted(artifacts)
        assert not [a for a in artifacts if a.startswith('epoch_')]
        download = Path(client.download_artifacts(
            run.info.run_id, best[0].name, str(tmp_path / 'download')))
        assert _sha(download) == _sha(best[0])
        png = Path(client.download_artifacts(
            run.info.run_id, 'pr_curves/coco_bbox_pr_curves_epoch_2.png',
            str(tmp_path / 'download')))
        assert _sha(png) == _sha(
            log_dir / 'pr_curves' / 'coco_bbox_pr_curves_epoch_2.png')


@pytest.mark.slow  # a server and/or a training run
def test_an_unreachable_server_stops_before_training(tmp_path):
    config = _mlflow_config(tmp_path, max_epochs=1)
    uri = f'http://127.0.0.1:{free_port()}'  # nobody listens there
    started = time.monotonic()
    proc = run_tool(TOOLS / 'train.py', config, '--work-dir',
                    tmp_path / 'work', env=_env(uri, 'nobody'), check=False)
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # tools/train.py prints one line, no traceback
    errors = [line for line in output.splitlines()
              if line.startswith('MLflowTrackingError: ')]
    assert len(errors) == 1, output[-6000:]
    assert 'Traceback' not in output, output[-6000:]
    assert f'MLflow tracking server {uri} does not answer' in errors[0]
    assert 'nothing was trained' in errors[0]
    assert 'Epoch(train)' not in output
    assert not list((tmp_path / 'work').glob('*.pth'))
    # one check, not mlflow's retries (about 4 minutes per request)
    assert elapsed < 120, elapsed


@pytest.mark.slow  # a server and/or a training run
def test_a_server_killed_mid_run_never_stops_training(tmp_path):
    from mlflow.tracking import MlflowClient
    marker = tmp_path / 'after_epoch_1'
    config = _mlflow_config(tmp_path, max_epochs=3, extra=f'''
custom_imports = dict(imports=['helpers.fault_injection'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='PauseAfterValidationHook', epoch=1,
                     marker={str(marker)!r})]
''')
    work_dir = tmp_path / 'work'
    log = tmp_path / 'train.log'
    server = MLflowServer(tmp_path / 'mlflow')
    with server:
        train = start_tool(TOOLS / 'train.py', config, '--work-dir',
                           work_dir, log=log, env=_env(server.uri, 'killed'),
                           new_session=True)
        try:
            deadline = time.monotonic() + 400
            while not marker.exists():
                assert train.poll() is None, log.read_text()[-6000:]
                assert time.monotonic() < deadline, log.read_text()[-6000:]
                time.sleep(0.2)
            server.stop()  # SIGKILL between epochs 1 and 2
            Path(f'{marker}.go').write_text('')
            resumed = time.monotonic()
            train.wait(timeout=400)
        finally:
            if train.poll() is None:
                kill_tree(train)
    output = log.read_text()
    assert train.returncode == 0, output[-6000:]
    # every epoch trained, validated and saved
    assert (work_dir / 'epoch_3.pth').exists()
    assert sorted(_local_series(work_dir, 'coco/bbox_mAP')) == [1, 2, 3]
    assert sorted(_local_series(work_dir, 'loss')) == [1, 2, 3, 4, 5, 6]
    # ... also in TensorBoard
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    (events, ) = work_dir.glob('*/vis_data/events.out.tfevents.*')
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars('coco/bbox_mAP')] == [1, 2, 3]
    # one warning naming the server, training went on without stalling
    lost = [line for line in output.splitlines()
            if 'stopped answering' in line]
    assert len(lost) == 1, output[-6000:]
    assert f'MLflow tracking server {server.uri}' in lost[0]
    assert 'Training goes on' in lost[0]
    assert 'artifacts were not uploaded to MLflow' in output
    assert time.monotonic() - resumed < 300
    # MLflow (its SQLite store, read directly) has epoch 1 and nothing later
    client = MlflowClient(server.backend_store_uri)
    run = _only_run(client, 'killed')
    history = client.get_metric_history(run.info.run_id, 'coco/bbox_mAP')
    assert [m.step for m in history] == [1]
    assert max(m.step for m in client.get_metric_history(
        run.info.run_id, 'loss')) == 2


def _backend_logging_to(tmp_path: Path, uri: str, **kwargs):
    """Our backend on ``uri`` in this process, its warnings in
    ``tmp_path/run.log`` (the current MMLogger's file)."""
    from mmengine.logging import MMLogger

    from ddetr_plugin.visualization import ResilientMLflowVisBackend
    MMLogger.get_instance(f'mlflow_{tmp_path.name}',
                          log_file=str(tmp_path / 'run.log'))
    return ResilientMLflowVisBackend(
        save_dir=str(tmp_path / 'work' / 'vis_data'), tracking_uri=uri,
        **kwargs)


@pytest.mark.slow  # a server and/or a training run
def test_logging_resumes_when_the_server_answers_again(tmp_path):
    from mlflow.tracking import MlflowClient
    from mmengine.config import Config
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    with MLflowServer(tmp_path / 'mlflow') as server:
        backend = _backend_logging_to(tmp_path, server.uri,
                                      exp_name='resumed', retry_interval=0)
        backend.add_config(Config(dict(work_dir=str(work_dir), lr=0.1)))
        backend.add_scalars({'loss': 3.0}, step=1)
        server.stop()
        backend.add_scalars({'loss': 2.0}, step=2)  # lost: not sent
        assert backend.server_lost
        server.start()  # the same port and store
        backend.add_scalars({'loss': 1.0}, step=3)
        assert not backend.server_lost
        picture = np.zeros((24, 32, 3), np.uint8)
        picture[:, :16] = (220, 20, 60)
        backend.add_image('sampling_points_BloodImage_00000', picture, step=3)
        (work_dir / 'best_coco_bbox_mAP_epoch_3.pth').write_bytes(b'best')
        (work_dir / 'epoch_3.pth').write_bytes(b'last')
        backend.close()
        client = MlflowClient(server.uri)
        run = _only_run(client, 'resumed')
        assert run.info.status == 'FINISHED'
        assert run.data.params['lr'] == '0.1'
        assert [(m.step, m.value) for m in client.get_metric_history(
            run.info.run_id, 'loss')] == [(1, 3.0), (3, 1.0)]
        # the config's text, the picture (named as LocalVisBackend names
        # it), and of the work dir's files only the best checkpoint (no
        # .json/.log/.py/yaml file there)
        assert set(_all_artifacts(client, run.info.run_id)) == {
            'config.py', 'best_coco_bbox_mAP_epoch_3.pth',
            'vis_image/sampling_points_BloodImage_00000_3.png'}
        downloaded = client.download_artifacts(
            run.info.run_id,
            'vis_image/sampling_points_BloodImage_00000_3.png',
            str(tmp_path / 'download'))
        np.testing.assert_array_equal(
            mmcv.imread(downloaded, channel_order='rgb'), picture)
    log = (tmp_path / 'run.log').read_text()
    assert log.count('the server stopped answering (add_scalars') == 1
    assert log.count(f'MLflow tracking server {server.uri} answers again: '
                     'logging to MLflow resumed') == 1


def test_a_server_that_is_not_mlflow_is_a_clear_error_at_the_start(
        tmp_path):
    """Something answers (an HTTP file server: 404 for mlflow's API): the
    start-up check passes and mlflow's refusal becomes the same clear
    error, naming the URI and the experiment."""
    from mmengine.config import Config

    from ddetr_plugin.visualization import MLflowTrackingError
    port = free_port()
    files = subprocess.Popen(
        [sys.executable, '-m', 'http.server', str(port), '--bind',
         '127.0.0.1', '--directory', str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        uri = f'http://127.0.0.1:{port}'
        deadline = time.monotonic() + 60
        while True:  # up once it answers (404 for /health)
            try:
                urllib.request.urlopen(uri + '/health', timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        backend = _backend_logging_to(tmp_path, uri, exp_name='bccd')
        with pytest.raises(MLflowTrackingError,
                           match=f"MLflow tracking at {uri}: setting up "
                           "experiment 'bccd' failed: MlflowException"):
            backend.add_config(Config(dict(work_dir=str(tmp_path))))
    finally:
        kill_tree(files)


@pytest.mark.parametrize('kwargs,message', [
    (dict(connect_timeout=0), 'connect_timeout must be a number >= 0 '
     r'\(> 0 for timeouts\), got 0'),
    (dict(retry_interval=-1), 'retry_interval must be a number >= 0'),
    (dict(http_backoff_factor=1.5), 'http_backoff_factor must be an '
     'integer >= 0'),
    (dict(artifact_patterns='best_*.pth'), 'artifact_patterns must be a '
     "sequence of glob patterns, got 'best_\\*.pth'"),
])
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    from ddetr_plugin.visualization import ResilientMLflowVisBackend
    with pytest.raises(ValueError, match=message):
        ResilientMLflowVisBackend(save_dir=str(tmp_path), **kwargs)


def test_the_server_check_needs_http_and_hides_passwords():
    from ddetr_plugin.visualization import (MLflowTrackingError,
                                            check_tracking_server)
    with pytest.raises(ValueError, match="needs an http\\(s\\) URI, got "
                       "'sqlite:///mlflow.db'"):
        check_tracking_server('sqlite:///mlflow.db')
    port = free_port()
    with pytest.raises(MLflowTrackingError) as error:
        check_tracking_server(f'http://me:secret@127.0.0.1:{port}')
    assert f'MLflow tracking server http://me:***@127.0.0.1:{port} does ' \
        'not answer' in str(error.value)
    assert 'secret' not in str(error.value)
