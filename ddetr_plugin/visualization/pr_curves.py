"""Per-class precision-recall curves as a picture (matplotlib, drawn off
screen with the Agg canvas, no pyplot state), for the dashboards: one
panel per IoU setting (e.g. 0.50 and 0.50:0.95), one line per class, its
AP in the legend. The curves come from
:func:`ddetr_plugin.evaluation.class_pr_curves`."""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def draw_pr_curves(panels: Sequence[Sequence], title: str = '',
                   colors: Optional[Dict[str, Tuple[int, int, int]]] = None,
                   panel_size: Tuple[float, float] = (4.0, 3.6),
                   dpi: int = 100) -> np.ndarray:
    """Draw precision over recall, one panel per IoU setting.

    Args:
        panels (Sequence[Sequence[ClassPRCurve]]): Per panel, its curves
            (:class:`ddetr_plugin.evaluation.ClassPRCurve`, one per class,
            all of one ``iou``). An empty panel shows "no class with ground
            truth".
        title (str): Above the panels.
        colors (dict, optional): Class name -> RGB (0-255), e.g. from the
            dataset's ``metainfo['palette']``; default: matplotlib's
            ``tab10`` in the order the classes first appear.
        panel_size (tuple[float, float]): Inches (width, height) of a panel.
        dpi (int): Pixels per inch.

    Returns:
        np.ndarray: uint8 ``(H, W, 3)`` RGB image.

    Raises:
        ValueError: No panel, or a panel mixing IoU settings.
    """
    if not panels:
        raise ValueError('draw_pr_curves needs at least one panel of curves')
    names = []
    for curves in panels:
        if len({curve.iou for curve in curves}) > 1:
            raise ValueError('a panel holds curves of one IoU setting, got '
                             f'{sorted({curve.iou for curve in curves})}')
        names += [c.class_name for c in curves if c.class_name not in names]
    palette = {name: np.array(colors[name]) / 255.0
               for name in names if colors and name in colors}
    for index, name in enumerate(n for n in names if n not in palette):
        palette[name] = np.array(colormaps['tab10'](index % 10)[:3])
    figure = Figure(figsize=(panel_size[0] * len(panels), panel_size[1]),
                    dpi=dpi, layout='constrained')
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, curves in zip(axes, panels):
        for curve in curves:
            ax.plot(curve.recall, curve.precision,
                    color=palette[curve.class_name], linewidth=1.8,
                    label=f'{curve.class_name} (AP {curve.ap:.3f}, '
                    f'{curve.num_gt} gt)')
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel('recall')
        ax.set_ylabel('precision')
        ax.grid(alpha=0.3)
        if curves:
            ax.set_title(f'IoU {curves[0].iou}')
            ax.legend(loc='lower left', fontsize='small')
        else:
            ax.text(0.5, 0.5, 'no class with ground truth', ha='center',
                    va='center', transform=ax.transAxes)
    if title:
        figure.suptitle(title)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
