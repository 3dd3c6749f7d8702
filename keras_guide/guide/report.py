"""`GuideReport`: how `guide()` set every student weight, and from what."""

import dataclasses
from typing import Optional

from keras_guide.initializers import projection as projection_lib


@dataclasses.dataclass(frozen=True)
class ReportRow:
    """How one student weight was set.

    Attributes:
        student: the student weight's path.
        teacher: the teacher weight it came from, or `None` (kept random).
        how: `pca`, `projected`, `folded`, `selected`, `diagonal`, `reset`,
            `copied` or `kept random`.
        teacher_shape: the teacher weight's shape, or `None`.
        student_shape: the student weight's shape.
    """

    student: str
    teacher: Optional[str]
    how: str
    teacher_shape: Optional[tuple]
    student_shape: tuple


@dataclasses.dataclass(frozen=True)
class GuideReport:
    """How every student weight was set.

    Attributes:
        family: str. The adapter's family name.
        projection: a `Projection`. The `M` used for the residual stream.
        layer_map: list of int. Teacher block index of each guided student
            block.
        entries: list of `ReportRow`. One per student weight, guided ones
            first in the adapter's order.
        options: dict. The options `guide` ran with.
        calibration: dict or None. `None`, or what the calibration pass
            measured: `tokens`, `seconds`, and `block_change` (per teacher
            block). Defaults to `None` (no calibration pass).
        selections: dict or None. The heads, key/value heads and neurons each
            guided student block kept, by teacher index (`{student block:
            {"heads": [...], "kv_heads": [...], "neurons": [...]}}`). Defaults
            to `None` (none recorded).
        recipe: str. `"data-aware"` (calibration given) or `"data-free"`:
            which defaults the options left unset took. Defaults to
            `"data-free"`.
    """

    family: str
    projection: projection_lib.Projection
    layer_map: list
    entries: list
    options: dict
    calibration: Optional[dict] = None
    selections: Optional[dict] = None
    recipe: str = "data-free"

    @property
    def explained_variance(self):
        return self.projection.explained_variance

    def as_dict(self):
        return {
            "family": self.family,
            "projection": self.projection.kind,
            "explained_variance": self.projection.explained_variance,
            "layer_map": list(self.layer_map),
            "options": dict(self.options),
            "recipe": self.recipe,
            "calibration": self.calibration,
            "selections": self.selections,
            "weights": [dataclasses.asdict(row) for row in self.entries],
        }

    def counts(self):
        counts = {}
        for row in self.entries:
            counts[row.how] = counts.get(row.how, 0) + 1
        return counts

    def __str__(self):
        rows = [("student weight", "how", "from teacher weight", "shapes")]
        for e in self.entries:
            shapes = str(e.student_shape)
            if e.teacher:
                shapes = f"{e.teacher_shape} -> {shapes}"
            rows.append((e.student, e.how, e.teacher or "-", shapes))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            f"GUIDE report ({self.family}): projection={self.projection.kind}, "
            f"explained variance={self.projection.explained_variance:.4f}, "
            f"student blocks <- teacher blocks {self.layer_map}",
            f"recipe: {self.recipe} (projection={self.options.get('projection')}, "
            f"select={self.options.get('select')}, "
            f"layer_map={self.options.get('layer_map')})",
        ]
        if self.calibration is not None:
            lines.append(
                f"calibration: {self.calibration['tokens']} tokens, "
                f"{self.calibration['seconds']:.1f} s; heads and neurons kept "
                f"by {self.options.get('select', 'uniform')}"
            )
        for i, row in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append(
            "summary: "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.counts().items()))
        )
        return "\n".join(lines)
