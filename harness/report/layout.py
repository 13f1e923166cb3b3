"""Whether a figure's text can be read: no two pieces of text overlap and every piece lies inside
the figure, measured on the laid-out figure (constrained layout runs at draw time) in pixels.

Used by the report tests on every figure a report writes; matplotlib can tell text extents, not
whether a label covers a line or a point, so those are left to the eye.
"""

from __future__ import annotations

from itertools import combinations

from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

TOLERANCE = 1.0  # pixels: boxes that merely touch are not overlapping


def text_problems(fig: Figure) -> list[str]:
    """Each overlap (`'a' overlaps 'b'`) and each text outside the figure, as sentences."""
    renderer = _canvas(fig).get_renderer()
    fig.draw(renderer)  # lays the figure out as savefig would
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in visible_texts(fig)]
    problems = [f"{label!r} is outside the figure" for label, box in boxes
                if not _inside(box, fig.bbox)]
    problems += [f"{a!r} overlaps {b!r}" for (a, box_a), (b, box_b) in combinations(boxes, 2)
                 if _overlap(box_a, box_b)]
    return problems


def _canvas(fig: Figure):
    """The figure's Agg canvas; a Figure made without pyplot has a bare one that cannot draw."""
    if hasattr(fig.canvas, "get_renderer"):
        return fig.canvas
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return FigureCanvasAgg(fig)


def visible_texts(fig: Figure) -> list[Text]:
    """Every drawn, non-empty text: titles, labels, legends, annotations, and the tick labels of
    ticks inside their axis's view (a locator also places ticks beyond it, never drawn)."""
    ticks = {id(label): label for label in _tick_labels(fig, in_view=False)}
    drawn = [t for t in fig.findobj(Text) if id(t) not in ticks and _shown(t)]
    return drawn + [t for t in _tick_labels(fig, in_view=True) if _shown(t)]


def _tick_labels(fig: Figure, in_view: bool) -> list[Text]:
    out = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in (*axis.get_major_ticks(), *axis.get_minor_ticks()):
                if in_view and not (low <= tick.get_loc() <= high):
                    continue
                out += [tick.label1, tick.label2]
    return out


def _shown(text: Text) -> bool:
    if not text.get_text().strip() or not text.get_visible():
        return False
    parent = text.axes
    return parent is None or parent.get_visible()


def _inside(box: Bbox, frame: Bbox) -> bool:
    return (box.x0 >= frame.x0 - TOLERANCE and box.y0 >= frame.y0 - TOLERANCE
            and box.x1 <= frame.x1 + TOLERANCE and box.y1 <= frame.y1 + TOLERANCE)


def _overlap(a: Bbox, b: Bbox) -> bool:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width > TOLERANCE and height > TOLERANCE
