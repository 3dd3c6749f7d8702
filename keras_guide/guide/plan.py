"""The plan: each student weight's guided value, from the adapter's weight
list, the projection `M` and the kept heads, neurons and blocks (host
float64; nothing is written to the student here)."""

import dataclasses

import numpy as np

from keras_guide import _host
from keras_guide.adapters.base import Adapter
from keras_guide.adapters.base import Copy
from keras_guide.adapters.base import Dims
from keras_guide.adapters.base import Head
from keras_guide.adapters.base import Norm
from keras_guide.adapters.base import Read
from keras_guide.adapters.base import Table
from keras_guide.adapters.base import Write
from keras_guide.guide.report import ReportRow
from keras_guide.initializers import folding
from keras_guide.initializers import importance
from keras_guide.initializers import projection as projection_lib
from keras_guide.initializers import selection
from keras_guide.initializers.guided_initializer import guided_value


@dataclasses.dataclass(frozen=True)
class Pair:
    """A validated teacher and student: backbones, family, sizes, block map."""

    teacher: object
    student: object
    adapter: Adapter
    d_t: Dims
    d_s: Dims
    layer_map: list


@dataclasses.dataclass(frozen=True)
class Guided:
    """One student weight's guided value (host float64) and its report row."""

    value: np.ndarray
    row: ReportRow


def layer_map(layer_map, n_teacher, n_student, blocks, stats):
    """The teacher block of each guided student block (`stats=False`: not
    measured yet, so `"importance"` is only checked)."""
    if isinstance(layer_map, str) and n_student > n_teacher and blocks != "first":
        raise ValueError(
            f"The student has {n_student} blocks, the teacher {n_teacher}: "
            f'layer_map="{layer_map}" gives each guided student block a teacher '
            f"block of its own, and GUIDE only shrinks. Build the student with at "
            f'most {n_teacher} blocks, guide only its first block (blocks="first"), '
            "or name a teacher block for each student block (layer_map=[...])."
        )
    if isinstance(layer_map, str):
        if layer_map == "importance":
            if not stats:
                return None
            mapping = importance.important_blocks(stats.block_change, n_student)
        elif layer_map == "uniform":
            mapping = selection.uniform_indices(n_teacher, n_student, "blocks").tolist()
        else:
            mapping = list(range(n_student))
    else:
        mapping = [int(i) for i in layer_map]  # whole indices (GuideOptions)
        if len(mapping) != n_student or not all(0 <= i < n_teacher for i in mapping):
            raise ValueError(
                f"An explicit `layer_map` needs one teacher block index in "
                f"[0, {n_teacher}) per student block ({n_student}). Received: "
                f"layer_map={mapping}"
            )
    return mapping[:1] if blocks == "first" else mapping


def projection(pair, projection, center, token_weights, stats):
    """`M`: from the token table, the calibration activations, a selection, or given."""
    table = next(
        w
        for w in pair.teacher.weights
        if w.path == pair.adapter.embeddings(pair.teacher)[0].path
    )
    d_t, d_s = int(table.shape[1]), pair.d_s.hidden_dim
    mean_preserving = pair.adapter.norm_kind == "layer"
    if isinstance(projection, str):
        if projection == "pca":
            return projection_lib.pca_projection(
                table,
                d_s,
                center=center,
                mean_preserving=mean_preserving,
                weights=token_weights,
                name=table.path,
            )
        if projection == "activations":
            return projection_lib.projection_from_gram(
                stats.gram, d_s, mean_preserving, kind="activations"
            )
        if projection == "channels":
            keep = importance.top_indices(np.diag(stats.gram), d_s, "residual channels")
            return projection_lib.selection_projection(d_t, d_s, keep, kind="channels")
        if projection == "select":
            return projection_lib.selection_projection(d_t, d_s)
        raise ValueError(
            "`projection` must be 'auto', 'pca', 'activations', 'channels', "
            "'select', a "
            f"(d_teacher, d_student) matrix or a Projection. Received: "
            f"projection={projection!r}"
        )
    m = projection_lib.as_projection(projection)
    if m.matrix.shape != (d_t, d_s):
        raise ValueError(
            f"The given projection has shape {m.matrix.shape}; teacher width "
            f"{d_t} and student width {d_s} need ({d_t}, {d_s})."
        )
    return m


def plan(pair, m, norm, rescale, select, stats):
    """Computes every guided student value, leaving the student as it is.

    Returns:
        `(guided, selections)`: a list of `_Guided`, embeddings first, then
        each guided block in the adapter's order; and the units each student
        block keeps (`GuideReport.selections`).
    """
    adapter, d_t, d_s = pair.adapter, pair.d_t, pair.d_s
    teacher_weights = {w.path: w for w in pair.teacher.weights}
    uniform = _uniform_units(d_t, d_s)
    plan = _Plan(
        m=m,
        norm=norm,
        rescale=rescale,
        ratio=folding.norm_scale(d_t.hidden_dim, d_s.hidden_dim),
        indices=uniform,
        query_scale=float(np.sqrt(d_t.head_dim / d_s.head_dim)) if rescale else 1.0,
        teacher=teacher_weights,
        student_shapes={w.path: tuple(w.shape) for w in pair.student.weights},
        source=adapter.embeddings(pair.teacher)[0].path,
    )
    t, s = pair.teacher, pair.student
    guided = plan.run(adapter.embeddings(t), adapter.embeddings(s))
    selections = {}
    for s_index, t_index in enumerate(pair.layer_map):
        units = (
            uniform
            if select == "uniform"
            else _important_units(stats, t_index, d_t, d_s, uniform)
        )
        selections[s_index] = {
            k: units[k].tolist() for k in ("heads", "kv_heads", "neurons")
        }
        block_plan = dataclasses.replace(plan, indices=units)
        guided += block_plan.run(adapter.block(t, t_index), adapter.block(s, s_index))
    return guided, selections


def _uniform_units(d_t, d_s):
    q_heads, kv_heads = selection.gqa_head_indices(
        d_t.num_heads, d_t.num_key_value_heads, d_s.num_heads, d_s.num_key_value_heads
    )
    return {
        "heads": q_heads,
        "kv_heads": kv_heads,
        "head_dim": selection.uniform_indices(d_t.head_dim, d_s.head_dim, "head_dim"),
        "neurons": selection.uniform_indices(
            d_t.intermediate_dim, d_s.intermediate_dim, "intermediate_dim"
        ),
    }


def _important_units(stats, block, d_t, d_s, uniform):
    """Teacher block `block`'s heads and neurons that write the most energy."""
    q_heads, kv_heads = importance.gqa_importance_indices(
        stats.head_energy[block],
        d_t.num_key_value_heads,
        d_s.num_heads,
        d_s.num_key_value_heads,
    )
    neurons = importance.top_indices(
        stats.neuron_energy[block], d_s.intermediate_dim, "MLP neurons"
    )
    return dict(uniform, heads=q_heads, kv_heads=kv_heads, neurons=neurons)


@dataclasses.dataclass
class _Plan:
    """Turns an adapter's weight list into guided student values (host float64)."""

    m: projection_lib.Projection
    norm: str
    rescale: bool
    ratio: float
    indices: dict
    query_scale: float
    teacher: dict
    student_shapes: dict
    source: str

    def _array(self, path):
        # Every teacher weight the plan reads (kernels, biases, gains, shifts)
        # passes here: a NaN or Inf is refused, named, before the student changes.
        array = _host.to_numpy(self.teacher[path]).astype(np.float64)
        _host.check_finite(array, path)
        return array

    def _select(self, rules, shift_axis=None):
        out = {}
        for axis, rule in rules.items():
            if shift_axis is not None and axis > shift_axis:
                axis -= 1
            out[axis] = self.indices[rule] if rule in self.indices else rule
        return out

    def _gain(self, norm):
        return self._array(norm.gain) + norm.offset

    def run(self, t_items, s_items):
        """Returns a list of `_Guided`, one per student weight the items set."""
        if len(t_items) != len(s_items):
            raise ValueError(
                f"The adapter lists {len(t_items)} teacher weights and "
                f"{len(s_items)} student weights for the same part of the model."
            )
        read_norms = {
            item.norm
            for item in t_items
            if isinstance(item, Read) and item.norm is not None
        }
        # An untied student head reads the final norm: its gain folds there.
        read_norms |= {
            s.norm for s in s_items if isinstance(s, Head) and s.reverse is not None
        }
        # A √d-scaled table (Gemma) already carries √(d_T/d_S) into the tied
        # head's logits; the final norm then must not add it again.
        scaled_table = any(
            isinstance(item, Table) and item.sqrt_d_scaled for item in t_items
        )
        guided = []
        for t_item, s_item in zip(t_items, s_items):
            if isinstance(t_item, Table):
                guided += self._table(t_item, s_item)
            elif isinstance(t_item, Read):
                guided += self._read(t_item, s_item)
            elif isinstance(t_item, Write):
                guided += self._write(t_item, s_item)
            elif isinstance(t_item, Norm):
                folded = t_item in read_norms and self.norm == "fold"
                guided += self._norm(t_item, s_item, folded, not scaled_table)
            elif isinstance(t_item, Head):
                guided += self._head(t_item, s_item)
            elif isinstance(t_item, Copy):
                value = self._array(t_item.path)
                guided.append(self._guided(s_item.path, t_item.path, "copied", value))
        return guided

    def _guided(self, s_path, t_path, how, value):
        t_shape = tuple(self.teacher[t_path].shape)
        return Guided(
            value, ReportRow(s_path, t_path, how, t_shape, tuple(value.shape))
        )

    def _table(self, t, s):
        table = self.teacher[t.path]
        rows_t = int(table.shape[0])
        scale = self.ratio if (t.sqrt_d_scaled and self.rescale) else 1.0
        rows_s = (
            self.student_shapes[s.path][0] if s.path in self.student_shapes else rows_t
        )
        if rows_s != rows_t and not t.positions:
            raise ValueError(
                f"The student's `{s.path}` has {rows_s} rows but the teacher's "
                f"`{t.path}` has {rows_t} (shape {tuple(table.shape)}). A token "
                "table keeps the teacher's vocabulary: build the student with the "
                "teacher's `vocabulary_size`."
            )
        # A shorter context keeps the first positions. The table is read by
        # row blocks in its own precision, never copied to float64.
        value = projection_lib.project_table(table, self.m, rows_s, scale, name=t.path)
        how = (
            "pca"
            if t.path == self.source and self.m.kind.startswith("pca")
            else "projected"
        )
        return [self._guided(s.path, t.path, how, value)]

    def _read(self, t, s, kernel=None, source=None):
        kernel = self._array(t.path) if kernel is None else kernel
        source = source or t.path
        fold = t.norm is not None and self.norm == "fold"
        gains = {t.d_axis: self._gain(t.norm)} if fold else {}
        scale = self.ratio if fold else 1.0
        if t.query:
            scale *= self.query_scale
        project = {t.d_axis: self.m}
        if t.out_axis is not None:
            project[t.out_axis] = self.m
        select = self._select(t.select)
        shape = self._shape(kernel.shape, project, select)
        value = guided_value(kernel, shape, project, select, gains, scale, name=source)
        how = "folded" if fold else "projected"
        guided = [self._guided(s.path, source, how, value)]
        if t.bias is None:
            return guided
        bias = self._array(t.bias)
        if fold and t.norm.shift is not None:
            bias = folding.fold_shift(
                kernel, self._array(t.norm.shift), t.d_axis, bias, name=t.path
            )
        bias_project = {t.out_axis - 1: self.m} if t.out_axis is not None else {}
        bias_select = self._select(t.select, shift_axis=t.d_axis)
        bias_scale = self.query_scale if t.query else 1.0
        value = guided_value(
            bias,
            self._shape(bias.shape, bias_project, bias_select),
            bias_project,
            bias_select,
            scale=bias_scale,
            name=t.bias,
        )
        how = "folded" if fold else "selected"
        return guided + [self._guided(s.bias, t.bias, how, value)]

    def _head(self, t, s):
        if s.reverse is None:
            if t.reverse is not None:
                raise ValueError(
                    f"The teacher has its own output head `{t.reverse}`, but the "
                    f"student ties its head to `{s.table}`: one table cannot hold "
                    "both. Build the student untied (`build_student` keeps the "
                    "teacher's untied head)."
                )
            return []  # The student's table, already guided, is its head.
        # A tied teacher's head is its table, read as a (d, V) kernel.
        kernel = self._array(t.reverse) if t.reverse else self._array(t.table).T
        read = Read(s.reverse, 0, {}, t.norm)
        return self._read(read, read, kernel=kernel, source=t.reverse or t.table)

    def _write(self, t, s):
        kernel = self._array(t.path)
        select = self._select(t.select)
        project = {t.d_axis: self.m}
        value = guided_value(
            kernel,
            self._shape(kernel.shape, project, select),
            project,
            select,
            name=t.path,
        )
        guided = [self._guided(s.path, t.path, "projected", value)]
        if t.bias is not None:
            bias = self._array(t.bias)
            value = guided_value(bias, (self.m.student_dim,), {0: self.m}, name=t.bias)
            guided.append(self._guided(s.bias, t.bias, "projected", value))
        return guided

    def _norm(self, t, s, folded, rescale_output):
        d_s = self.m.student_dim
        if folded or self.norm == "reset":
            how = "reset" if not folded else "folded"
            gain = np.full((d_s,), 1.0 - t.offset)
            guided = [self._guided(s.gain, t.gain, how, gain)]
            if t.shift is not None:
                guided.append(self._guided(s.shift, t.shift, how, np.zeros((d_s,))))
            return guided
        scale = self.ratio if self.rescale and rescale_output else 1.0
        gain = scale * folding.diagonal_gain(self._gain(t), self.m.matrix)
        guided = [self._guided(s.gain, t.gain, "diagonal", gain - t.offset)]
        if t.shift is not None:
            shift = folding.project_axis(self._array(t.shift), self.m.matrix, 0)
            guided.append(self._guided(s.shift, t.shift, "diagonal", shift))
        return guided

    def _shape(self, t_shape, project, select):
        shape = list(t_shape)
        for axis in project:
            shape[axis] = self.m.student_dim
        for axis, idx in select.items():
            if not isinstance(idx, str):
                shape[axis] = len(idx)
        return tuple(shape)
