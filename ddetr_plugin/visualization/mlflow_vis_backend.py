"""``ResilientMLflowVisBackend``: mmengine's ``MLflowVisBackend`` that fails
fast and clearly when the tracking server is down at the start, never stops
training when it goes down later, and uploads the best checkpoint.

mmengine 0.10.7's ``MLflowVisBackend`` (``mmengine/visualization/
vis_backend.py``) leaves four gaps this class closes:

* an unreachable server: mlflow's HTTP client retries every request
  (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, 7 with backoff: about 4 minutes per
  request) and then raises inside ``Runner.__init__`` with the urllib3
  traceback. Here one HTTP request with ``connect_timeout`` checks the
  server before mlflow is used, and :class:`MLflowTrackingError` names the
  tracking URI, before training;
* a server that stops answering mid-run: every ``add_scalars`` raised (after
  the same 4 minutes), which stopped training. Here the failure is logged
  once as a warning, MLflow logging pauses (one cheap reconnection try
  every ``retry_interval`` seconds, then it resumes) and training goes on;
  the other backends (``LocalVisBackend``'s ``scalars.json``,
  TensorBoard) keep every value. mlflow's own retries are cut to
  ``http_max_retries`` (a few seconds) unless the environment sets them;
* the artifacts: ``close()`` uploads the work directory's files with
  ``artifact_suffix`` (``.json``, ``.log``, ``.py``, ``yaml``: logs,
  ``scalars.json``, configs), never a ``.pth``; ``artifact_patterns``
  (default ``best_*.pth``: the best checkpoint of ``CheckpointHook``'s
  ``save_best``, only the best) adds files by glob pattern;
* pictures (``add_image``): mmengine's uses the picture's name as the
  artifact file (no extension: an error; every epoch: the same file); here
  ``vis_image/<name>_<step>.png``, as ``LocalVisBackend`` names them.

Registered in the ``ddetr_plugin`` scope's ``VISBACKENDS``;
``configs/_base_/runtime/mlflow.py`` uses it, docs/dashboards.md.
"""
import glob
import logging
import os
import os.path as osp
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, Dict, Optional, Sequence, Union

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.utils import scandir
from mmengine.visualization import MLflowVisBackend
from mmengine.visualization.vis_backend import force_init_env

from ddetr_plugin.registry import VISBACKENDS

#: mlflow's HTTP settings this backend defaults (the environment wins)
_HTTP_ENV = ('MLFLOW_HTTP_REQUEST_MAX_RETRIES',
             'MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR',
             'MLFLOW_HTTP_REQUEST_TIMEOUT')


class MLflowTrackingError(RuntimeError):
    """MLflow tracking cannot start: the tracking server does not answer,
    or it refused to set up the experiment, the run or its parameters."""


def redact_uri(uri: str) -> str:
    """``uri`` without a password (``http://user:***@host``), for
    messages."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f':{parts.password}@', ':***@', 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def check_tracking_server(uri: str, timeout: float = 5.0) -> None:
    """Check that an HTTP server answers at the tracking URI ``uri``.

    One GET of ``<uri>/health`` (the MLflow server's health endpoint),
    without retries; any HTTP answer counts (also an error status, e.g.
    behind a proxy that needs authentication: mlflow's own requests then
    report what is wrong).

    Args:
        uri (str): An ``http://`` or ``https://`` tracking URI.
        timeout (float): Seconds to wait for the connection and answer.

    Raises:
        MLflowTrackingError: Nothing answers (connection refused, unknown
            host, timeout), naming ``uri`` and the reason.
        ValueError: ``uri`` is not an http(s) URI.
    """
    if urllib.parse.urlsplit(uri).scheme not in ('http', 'https'):
        raise ValueError(f'check_tracking_server needs an http(s) URI, '
                         f'got {redact_uri(uri)!r}')
    try:
        with urllib.request.urlopen(uri.rstrip('/') + '/health',
                                    timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return  # an answer
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, 'reason', error)
        raise MLflowTrackingError(
            f'MLflow tracking server {redact_uri(uri)} does not answer '
            f'({reason}). Start it (e.g. `mlflow server --host 127.0.0.1 '
            '--port 5000 --backend-store-uri sqlite:///mlflow.db`) or set '
            'the right tracking_uri in the config\'s MLflow visualizer '
            'backend (configs/_base_/runtime/mlflow.py reads '
            '$MLFLOW_TRACKING_URI); nothing was trained.') from None


def _short(error: BaseException, limit: int = 300) -> str:
    """``error``'s type and message, cut to ``limit`` characters."""
    text = f'{type(error).__name__}: {error}'
    return text if len(text) <= limit else text[:limit] + '...'


@VISBACKENDS.register_module()
class ResilientMLflowVisBackend(MLflowVisBackend):
    """mmengine's ``MLflowVisBackend`` with a start-up check, logging that
    survives a lost server, and the best checkpoint among the artifacts
    (see the module docstring).

    Args:
        save_dir, exp_name, run_name, tags, params, tracking_uri,
        artifact_suffix, tracked_config_keys, artifact_location: As
            mmengine's ``MLflowVisBackend``: ``tracking_uri`` None logs to
            ``file://<save_dir>``; ``exp_name`` None is ``'Default'``;
            ``tracked_config_keys`` None logs the whole resolved config as
            parameters (flattened, ``model.backbone.type``); files of the
            work directory ending with ``artifact_suffix`` are uploaded at
            ``close()``.
        artifact_patterns (Sequence[str]): Glob patterns, relative to the
            work directory, of more files uploaded at ``close()``; default
            the best checkpoint(s) ``best_*.pth``. ``()`` for none.
        connect_timeout (float): Seconds the start-up check (and each
            reconnection try) waits for the server.
        http_max_retries, http_backoff_factor, http_timeout (int):
            mlflow's ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
            ``..._BACKOFF_FACTOR`` and ``..._TIMEOUT`` for this process,
            where the environment does not set them (mlflow: 7, 2, 120,
            i.e. minutes of retries per request).
        retry_interval (float): Seconds between reconnection tries once
            the server stopped answering; meanwhile nothing is sent.

    Raises:
        ValueError: A negative (or zero timeout) ``connect_timeout``,
            ``retry_interval`` or ``http_*`` value, a non-integer
            ``http_*`` (mlflow reads them as integers), or
            ``artifact_patterns`` not a sequence of strings.
        MLflowTrackingError: From the first use (mmengine's Runner: the
            ``add_config`` in ``Runner.__init__``, before training): the
            server does not answer, or refuses the experiment, run or
            config parameters.
    """

    def __init__(self,
                 save_dir: str,
                 exp_name: Optional[str] = None,
                 run_name: Optional[str] = None,
                 tags: Optional[dict] = None,
                 params: Optional[dict] = None,
                 tracking_uri: Optional[str] = None,
                 artifact_suffix: Union[str, Sequence[str]] = (
                     '.json', '.log', '.py', 'yaml'),
                 tracked_config_keys: Optional[dict] = None,
                 artifact_location: Optional[str] = None,
                 artifact_patterns: Sequence[str] = ('best_*.pth', ),
                 connect_timeout: float = 5.0,
                 http_max_retries: int = 2,
                 http_backoff_factor: int = 1,
                 http_timeout: int = 20,
                 retry_interval: float = 60.0):
        if isinstance(artifact_suffix, list):
            artifact_suffix = tuple(artifact_suffix)  # scandir needs these
        super().__init__(save_dir, exp_name, run_name, tags, params,
                         tracking_uri, artifact_suffix, tracked_config_keys,
                         artifact_location)
        if isinstance(artifact_patterns, str) or not all(
                isinstance(p, str) for p in artifact_patterns):
            raise ValueError('artifact_patterns must be a sequence of glob '
                             f'patterns, got {artifact_patterns!r}')
        numbers = dict(connect_timeout=(connect_timeout, (int, float)),
                       http_max_retries=(http_max_retries, int),
                       http_backoff_factor=(http_backoff_factor, int),
                       http_timeout=(http_timeout, int),
                       retry_interval=(retry_interval, (int, float)))
        for name, (value, kind) in numbers.items():
            if (not isinstance(value, kind) or isinstance(value, bool)
                    or value < 0 or (name.endswith('timeout')
                                     and value == 0)):
                what = 'an integer' if kind is int else 'a number'
                raise ValueError(
                    f'ResilientMLflowVisBackend: {name} must be {what} '
                    f'>= 0 (> 0 for timeouts), got {value!r}')
        self._artifact_patterns = tuple(artifact_patterns)
        self._connect_timeout = float(connect_timeout)
        self._http_env = dict(
            zip(_HTTP_ENV, (http_max_retries, http_backoff_factor,
                            http_timeout)))
        self._retry_interval = float(retry_interval)
        #: monotonic time of the last failure while the server is lost
        self._lost_since: Optional[float] = None
        self._refusals_warned = set()

    @property
    def server_lost(self) -> bool:
        """Whether the tracking server stopped answering (and has not
        answered a reconnection try since)."""
        return self._lost_since is not None

    def _uri(self) -> str:
        return redact_uri(self._tracking_uri or
                          f'file://{osp.abspath(self._save_dir)}')

    def _is_http(self) -> bool:
        return self._tracking_uri is not None and urllib.parse.urlsplit(
            self._tracking_uri).scheme in ('http', 'https')

    def _init_env(self):
        """Check the server (http(s) URIs), then mmengine's set-up
        (experiment, run name, tags, params).

        Raises:
            MLflowTrackingError: See the class docstring.
        """
        for name, value in self._http_env.items():
            os.environ.setdefault(name, str(value))
        if self._is_http():
            check_tracking_server(self._tracking_uri, self._connect_timeout)
        try:
            super()._init_env()
        except Exception as error:
            raise MLflowTrackingError(
                f'MLflow tracking at {self._uri()}: setting up experiment '
                f'{self._exp_name or "Default"!r} failed: {_short(error)}'
            ) from error

    @force_init_env
    def add_config(self, config: Config, **kwargs) -> None:
        """Log ``config`` as the run's parameters and ``config.py``
        (mmengine's ``add_config``); called by ``Runner.__init__``.

        Raises:
            MLflowTrackingError: The server does not answer, or refuses the
                parameters (e.g. a value over MLflow's length limit: set
                ``tracked_config_keys``).
        """
        try:
            super().add_config(config, **kwargs)
        except Exception as error:
            raise MLflowTrackingError(
                f'MLflow tracking at {self._uri()}: logging the config as '
                f'the run\'s parameters failed: {_short(error)}') from error

    @force_init_env
    def add_image(self, name: str, image, step: int = 0, **kwargs) -> None:
        """Log an RGB picture as the artifact
        ``vis_image/<name>_<step>.png`` (``LocalVisBackend``'s file name),
        never raising for the server (see :meth:`_guarded`).

        mmengine's ``add_image`` uses ``name`` itself as the artifact file:
        a name without an image extension (``sampling_points_...``) fails,
        and each validation overwrites the previous picture.

        Args:
            name (str): The picture's name.
            image (np.ndarray): uint8 ``(H, W, 3)`` RGB.
            step (int): Epoch or iteration.
        """
        self._guarded('add_image', self._mlflow.log_image, image,
                      artifact_file=f'vis_image/{name}_{step}.png')

    @force_init_env
    def add_scalar(self, name: str, value, step: int = 0, **kwargs) -> None:
        """mmengine's ``add_scalar``, never raising for the server."""
        self._guarded('add_scalar', super().add_scalar, name, value, step,
                      **kwargs)

    @force_init_env
    def add_scalars(self, scalar_dict: dict, step: int = 0,
                    file_path: Optional[str] = None, **kwargs) -> None:
        """mmengine's ``add_scalars`` (every loss, learning rate and
        metric of ``LoggerHook``), never raising for the server."""
        self._guarded('add_scalars', super().add_scalars, scalar_dict, step,
                      file_path, **kwargs)

    @force_init_env
    def log_artifact(self, local_path: str,
                     artifact_path: Optional[str] = None) -> bool:
        """Upload one file to the run's artifacts now (e.g. a picture of
        :class:`ddetr_plugin.engine.hooks.PRCurveHook`), never raising for
        the server.

        Args:
            local_path (str): The file.
            artifact_path (str, optional): Folder in the run's artifacts.

        Returns:
            bool: Whether it was uploaded.
        """
        return self._guarded('log_artifact', self._mlflow.log_artifact,
                             local_path, artifact_path)

    def artifact_files(self) -> Dict[str, str]:
        """What :meth:`close` uploads: files of the config's ``work_dir``
        ending with ``artifact_suffix`` (recursively) or matching
        ``artifact_patterns``.

        Returns:
            dict[str, str]: Local path -> artifact folder (its folder
            relative to ``work_dir``, ``''`` at the top); empty before
            ``add_config``.
        """
        cfg = getattr(self, 'cfg', None)
        if cfg is None or not cfg.get('work_dir'):
            return {}
        work_dir = cfg.work_dir
        paths = [osp.join(work_dir, name) for name in scandir(
            work_dir, self._artifact_suffix, recursive=True)]
        for pattern in self._artifact_patterns:
            paths += sorted(glob.glob(osp.join(work_dir, pattern),
                                      recursive=True))
        return {path: osp.dirname(osp.relpath(path, work_dir))
                for path in paths if osp.isfile(path)}

    def close(self) -> None:
        """Upload :meth:`artifact_files` and end the run. With the server
        lost, one reconnection try first; what cannot be uploaded stays in
        the work directory, with one warning."""
        if not hasattr(self, '_mlflow'):
            return
        files = self.artifact_files()
        if self.server_lost:
            self._reconnect(force=True)
        uploaded = [path for path, folder in files.items()
                    if self._guarded('log_artifact', self._mlflow.log_artifact,
                                     path, folder or None)]
        missing = sorted(set(files) - set(uploaded))
        if missing:
            self._warn(f'{len(missing)} of {len(files)} artifacts were not '
                       'uploaded to MLflow; they stay in the work directory: '
                       + ', '.join(missing[:10]) +
                       (' ...' if len(missing) > 10 else ''))
        self._guarded('end_run', self._mlflow.end_run)

    def _warn(self, message: str) -> None:
        print_log(f'MLflow tracking server {self._uri()}: {message}',
                  logger='current', level=logging.WARNING)

    def _server_answers(self) -> bool:
        """One quick check (http(s) URIs; other stores count as up)."""
        if not self._is_http():
            return True
        try:
            check_tracking_server(self._tracking_uri, self._connect_timeout)
        except MLflowTrackingError:
            return False
        return True

    def _reconnect(self, force: bool = False) -> bool:
        """Once ``retry_interval`` passed since the last failure (or with
        ``force``), check the server; resume logging if it answers.

        Returns:
            bool: Whether logging goes on (the server answers).
        """
        if not force and (time.monotonic() - self._lost_since <
                          self._retry_interval):
            return False
        if not self._server_answers():
            self._lost_since = time.monotonic()
            return False
        self._lost_since = None
        print_log(
            f'MLflow tracking server {self._uri()} answers again: logging '
            'to MLflow resumed (what came meanwhile is only in the local '
            'logs)', logger='current', level=logging.WARNING)
        return True

    def _guarded(self, kind: str, func: Callable, *args, **kwargs) -> bool:
        """Call ``func`` (an mlflow call), never raising.

        While the server is lost, nothing is sent (until a reconnection try
        succeeds, :meth:`_reconnect`). A failure with a server that does
        not answer marks it lost, with one warning; a failure while it
        answers (it refused the call) warns once per ``kind``.

        Returns:
            bool: Whether ``func`` ran without an error.
        """
        if self.server_lost and not self._reconnect():
            return False
        try:
            func(*args, **kwargs)
            return True
        except Exception as error:  # mlflow, requests, OSError, ...
            if self._server_answers():
                if kind not in self._refusals_warned:
                    self._refusals_warned.add(kind)
                    self._warn(f'{kind} failed ({_short(error)}); training '
                               'goes on (further failures of this kind are '
                               'not reported)')
                return False
            self._lost_since = time.monotonic()
            self._warn(
                f'the server stopped answering ({kind} failed: '
                f'{_short(error)}). Training goes on: every metric stays in '
                f'the local logs ({osp.dirname(self._save_dir)}: the JSON '
                'log and vis_data/scalars.json, TensorBoard); MLflow logging '
                f'pauses and is retried every {self._retry_interval:g} s')
            return False
