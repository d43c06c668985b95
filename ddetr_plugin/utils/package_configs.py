"""``ddetr_plugin::`` config paths: the package's configs from any directory.

The package carries its configs in ``ddetr_plugin/.mim/configs`` (setup.py
copies them into a wheel and links them for an editable install), as
mmdet's are in ``mmdet/.mim/configs``. mmengine resolves a base config
``_base_ = 'mmdet::faster_rcnn/x.py'`` there, but only for the packages of
its ``MODULE2PACKAGE`` table (OpenMMLab's own). :func:`register_config_scope`
(run when ``ddetr_plugin`` is imported) adds ours, so in any process that
imported ddetr_plugin (our tools, ``mim train ddetr_plugin``, a script that
imports it first)::

    _base_ = 'ddetr_plugin::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py'

works from any directory. :func:`load_config` also takes such a path as the
config itself, and turns mmengine's bare "file does not exist" for a wrong
``ddetr_plugin::`` path (in the config or any of its bases) into
:class:`ConfigNotFoundError`, which names the package's config folder and
the closest config names. ``tools/train.py`` and ``tools/test.py`` load
their config with it.
"""
import ast
import difflib
import os
from pathlib import Path
from typing import List, Optional, Tuple

PACKAGE = 'ddetr_plugin'
PREFIX = f'{PACKAGE}::'
#: what mmengine's ``MODULE2PACKAGE`` maps ``ddetr_plugin`` to, see
#: :func:`register_config_scope`
LOOKUP_MODULE = f'{PACKAGE}.version'


class ConfigNotFoundError(FileNotFoundError):
    """A ``ddetr_plugin::`` path names no config of the installed package."""


def package_dir() -> Path:
    """The folder Python imports ``ddetr_plugin`` from (site-packages for
    a regular install, the repository's ``ddetr_plugin/`` for an editable
    one)."""
    return Path(__file__).absolute().parents[1]


def config_dir() -> Path:
    """``<package>/.mim/configs``: where ``ddetr_plugin::<path>`` points.

    Returns:
        Path: the folder (it may be missing, e.g. when the package was
        copied onto ``sys.path`` without ``setup.py``).
    """
    return package_dir() / '.mim' / 'configs'


def register_config_scope() -> None:
    """Let mmengine resolve ``ddetr_plugin::<path>`` base configs.

    Adds ``ddetr_plugin`` to ``mmengine.config.utils.MODULE2PACKAGE`` (the
    dict is read at each look-up; an entry already there is kept).
    mmengine then asks pkg_resources where the mapped name is installed;
    for a PEP 660 editable install (``make install``) pkg_resources answers
    site-packages, where the package is not, so the name mapped to is
    :data:`LOOKUP_MODULE`, a module of ours that no distribution is named
    after: mmengine's ``is_installed``/``get_installed_path`` then fall
    back to ``importlib.util.find_spec``, i.e. to the folder Python
    imports the package from (:func:`package_dir`), for regular and
    editable installs alike.
    """
    from mmengine.config import utils as config_utils
    config_utils.MODULE2PACKAGE.setdefault(PACKAGE, LOOKUP_MODULE)


def available_configs() -> List[str]:
    """Every config of the package, as paths relative to :func:`config_dir`
    (``deformable_detr/deformable-detr_r50_16xb2-50e_coco.py``, ...),
    sorted; empty when the folder is missing."""
    root = config_dir()
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix()
                  for p in root.rglob('*.py')
                  if '__pycache__' not in p.parts)


def closest_configs(relative: str, limit: int = 5) -> List[str]:
    """The configs of the package whose paths are closest to ``relative``.

    Args:
        relative (str): a path relative to :func:`config_dir`.
        limit (int): at most this many.

    Returns:
        list[str]: closest first, by ``difflib`` similarity of the whole
        relative path, then of the file name alone (a right name in a wrong
        folder); may be empty.
    """
    names = available_configs()
    found = difflib.get_close_matches(relative, names, n=limit, cutoff=0.6)
    by_file = {}
    for name in names:
        by_file.setdefault(name.rsplit('/', 1)[-1], []).append(name)
    for file_name in difflib.get_close_matches(
            relative.rsplit('/', 1)[-1], list(by_file), n=limit,
            cutoff=0.6):
        found += [n for n in by_file[file_name] if n not in found]
    return found[:limit]


def _not_found_message(spec: str, where: Optional[str] = None) -> str:
    relative = spec[len(PREFIX):]
    root = config_dir()
    text = f'{spec}' + (f' (a base of {where})' if where else '')
    if not root.is_dir():
        return (f'{text}: the config folder of {PACKAGE}, {root}, does not '
                'exist; the package was installed without its .mim folder '
                '(install it with pip install --no-build-isolation . or '
                '-e ., see docs/packaging.md)')
    closest = closest_configs(relative)
    hint = ('closest: ' + ', '.join(PREFIX + c for c in closest)
            if closest else
            f'it holds {len(available_configs())} configs, none close')
    return (f'{text}: no config {relative!r} in the config folder of '
            f'{PACKAGE}, {root} (a {PREFIX} path is relative to it); '
            f'{hint}')


def resolve_config(path: str) -> str:
    """The file of a config path: ``ddetr_plugin::<path>`` becomes the file
    in :func:`config_dir`, any other path is returned unchanged.

    Args:
        path (str): a file path, or ``ddetr_plugin::<folder>/<name>.py``.

    Returns:
        str: the path to hand to ``Config.fromfile``.

    Raises:
        ConfigNotFoundError: a ``ddetr_plugin::`` path naming no config
            (the message names the config folder and the closest configs).
    """
    path = str(path)
    if not path.startswith(PREFIX):
        return path
    target = config_dir() / path[len(PREFIX):]
    if not target.is_file():
        raise ConfigNotFoundError(_not_found_message(path))
    return str(target)


def _base_paths(filename: str) -> List[str]:
    """The ``_base_`` entries of a ``.py`` config, read from its source
    (nothing is executed); [] for other formats or when there is none."""
    if not filename.endswith('.py'):
        return []
    tree = ast.parse(Path(filename).read_text(encoding='utf-8'))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == '_base_'):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            return [value] if isinstance(value, str) else list(value)
    return []


def find_missing_package_base(filename: str) -> Optional[Tuple[str, str]]:
    """The first ``ddetr_plugin::`` base, in ``filename``'s inheritance
    chain, that names no config of the package.

    Local bases are followed relative to the file that names them,
    ``ddetr_plugin::`` bases into :func:`config_dir`; other packages'
    bases (``mmdet::``) are left to mmengine.

    Args:
        filename (str): a config file.

    Returns:
        tuple[str, str] | None: ``(base, file naming it)``, or None when
        every ``ddetr_plugin::`` base exists.
    """
    todo, seen = [os.path.abspath(filename)], set()
    while todo:
        current = todo.pop()
        if current in seen or not os.path.isfile(current):
            continue
        seen.add(current)
        for base in _base_paths(current):
            if base.startswith(PREFIX):
                target = config_dir() / base[len(PREFIX):]
                if not target.is_file():
                    return base, current
                todo.append(str(target))
            elif '::' not in base:
                todo.append(os.path.normpath(
                    os.path.join(os.path.dirname(current), base)))
    return None


def load_config(path: str, cfg_options: Optional[dict] = None):
    """``Config.fromfile`` that knows ``ddetr_plugin::`` paths.

    Args:
        path (str): a config file, or ``ddetr_plugin::<folder>/<name>.py``.
        cfg_options (dict, optional): merged in (``--cfg-options``).

    Returns:
        mmengine.config.Config: the config.

    Raises:
        ConfigNotFoundError: ``path`` or a base of its inheritance chain is
            a ``ddetr_plugin::`` path naming no config of the package (the
            message names the config folder, the file that names the base
            and the closest configs; mmengine's own error is chained).
        Exception: whatever else ``Config.fromfile`` raises, unchanged.
    """
    from mmengine.config import Config
    register_config_scope()
    filename = resolve_config(path)
    try:
        cfg = Config.fromfile(filename)
    except (FileNotFoundError, ValueError, AssertionError) as error:
        missing = find_missing_package_base(filename)
        if missing is None:
            raise
        raise ConfigNotFoundError(_not_found_message(*missing)) from error
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg
