"""`guide(teacher, student)`: GUIDE-initialize a KerasHub student from its teacher."""

import dataclasses
from typing import Optional

import keras
import numpy as np

from keras_guide import _host
from keras_guide.adapters import adapter_for
from keras_guide.adapters import backbone_of
from keras_guide.adapters import shared_adapter
from keras_guide.adapters.base import Adapter
from keras_guide.adapters.base import Copy
from keras_guide.adapters.base import Dims
from keras_guide.adapters.base import Head
from keras_guide.adapters.base import Norm
from keras_guide.adapters.base import Read
from keras_guide.adapters.base import Table
from keras_guide.adapters.base import Write
from keras_guide.adapters.base import item_paths
from keras_guide.initializers import folding
from keras_guide.initializers import importance
from keras_guide.initializers import projection as projection_lib
from keras_guide.initializers import selection
from keras_guide.initializers.guided_initializer import guided_value
from keras_guide.initializers.guided_initializer import to_dtype
from keras_guide.regularizers import GuideRegularizer
from keras_guide.regularizers import track_guide_state
from keras_guide.regularizers.guide_regularizer import check_strength

_BLOCKS = ("first", "all")
_LAYER_MAPS = ("uniform", "first", "importance")
_NORMS = ("fold", "diagonal", "reset")
_SELECTS = ("uniform", "importance")


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


@dataclasses.dataclass
class GuideReport:
    """How every student weight was set.

    Attributes:
        family: the adapter's family name.
        projection: the `Projection` `M` used for the residual stream.
        layer_map: teacher block index of each guided student block.
        entries: one `ReportRow` per student weight, guided ones first in
            the adapter's order.
        options: the options `guide` ran with.
        calibration: `None`, or what the calibration pass measured: `tokens`,
            `seconds`, and `block_change` (per teacher block).
        selections: the heads, key/value heads and neurons each guided
            student block kept, by teacher index (`{student block: {"heads":
            [...], "kv_heads": [...], "neurons": [...]}}`).
        recipe: `"data-aware"` (calibration given) or `"data-free"`: which
            defaults the options left unset took.
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
        lines.append("summary: " + ", ".join(f"{k}={v}" for k, v in sorted(self.counts().items())))
        return "\n".join(lines)


# What `calibration=` alone chooses (each option the caller leaves unset): the
# data-aware recipe measured best on both real teachers (README, "Data-aware
# choices").
DATA_AWARE = {"projection": "channels", "select": "importance",
              "layer_map": "importance"}
DATA_FREE = {"projection": "auto", "select": "uniform", "layer_map": "uniform"}


def _resolve(calibration, projection, select, layer_map):
    """The options unset by the caller (`None`, or `"auto"` for the
    projection): the data-aware recipe with calibration, else data-free."""
    recipe = DATA_AWARE if calibration is not None else DATA_FREE
    given = {"projection": projection, "select": select, "layer_map": layer_map}
    chosen = {}
    for name, value in given.items():
        unset = value is None or (
            name == "projection" and isinstance(value, str) and value == "auto"
            and calibration is not None
        )
        chosen[name] = recipe[name] if unset else value
    return chosen


def guide(
    teacher,
    student,
    blocks="all",
    layer_map=None,
    projection="auto",
    center=False,
    norm="diagonal",
    rescale=True,
    token_weights=None,
    regularize=None,
    select=None,
    calibration=None,
):
    """Initializes a built KerasHub student in place from a teacher of its family.

    The teacher's token table gives `M` (PCA, docs/method.md §1); the student's
    table is `E_T M`; every guided block reads through `Mᵀ` and writes through
    `M`, each norm keeping the diagonal of its projected gain (§2); heads, key/value
    groups and MLP neurons are uniformly selected (§3). The teacher is read,
    never modified; the student is changed only once every value is computed
    and its shape checked.

    Args:
        teacher: a KerasHub backbone or task model (e.g. `GPT2CausalLM`).
        student: a built model of the same family, no wider on any axis.
        blocks: `"first"` (the paper: embeddings and the first block; the
            other blocks keep their random initialization) or `"all"`.
        layer_map: how student blocks pick teacher blocks: `"uniform"`,
            `"first"`, `"importance"` (the blocks that change the stream
            most on the calibration text, in order; needs `calibration`), or
            a list of teacher block indices. Default `None`: `"importance"`
            with `calibration`, else `"uniform"`.
        projection: `"pca"` (GUIDE: the token table's principal directions),
            `"activations"` (the principal directions of the residual stream
            on the calibration text, every block boundary and token weighed
            alike; needs `calibration`), `"channels"` (the `d_S` residual
            channels with the most activation energy on the calibration text,
            kept as they are: a selection, so a tied head's final gain stays
            exact; needs `calibration`), `"select"` (identity columns at
            uniformly selected indices: uniform weight selection, Xu et al.
            2023), a `(d_T, d_S)` matrix / `Projection`, or `"auto"` (the
            default): `"channels"` with `calibration`; without it `"pca"`,
            except for post-norm encoders (BERT), whose stream carries
            elementwise norm gains that a rotation cannot (`"select"`). For
            LayerNorm families the PCA bases are built mean-preserving so the
            fold stays exact.
        center: centre the table before the PCA.
        norm: `"diagonal"` (student gain `diag(Mᵀ diag(γ) M)`, readers
            plain: the closest per-coordinate gain, nothing moved into the
            readers), `"fold"` (exact: gains folded into readers, student
            gains 1; a full-width student reproduces its teacher only with
            it) or `"reset"` (student gains 1, nothing folded). The README
            compares them.
        rescale: apply the width ratios that keep magnitudes (`√(d_T/d_S)` on
            unfolded norms and Gemma's table, `√(ℓ_T/ℓ_S)` on queries when
            heads narrow). Uniform weight selection uses `False`.
        token_weights: optional `(V,)` token frequencies for a weighted PCA.
        regularize: `None`, or a strength `λ`: attach a `GuideRegularizer`
            (one shared strength variable) to every guided weight, its target
            the guided value.
        select: how heads, key/value groups and MLP neurons are kept:
            `"uniform"` (the paper's rule, the same indices in every block)
            or `"importance"` (per block, the units that write the most
            energy into the stream on the calibration text; needs
            `calibration`). Default `None`: `"importance"` with
            `calibration`, else `"uniform"`.
        calibration: text for the data-aware choices: token ids of shape
            `(sequences, length)`, or batches of them (arrays, input dicts,
            `(x, y)` tuples, a `tf.data.Dataset`); see
            `keras_guide.calibration.calibration_batches`. The teacher runs
            on it once, in inference mode, and is not changed. Or the
            `ActivationStatistics` such a pass returned
            (`keras_guide.calibration.collect_statistics`), to guide several
            students from one pass. Given alone, it applies the data-aware
            recipe (`DATA_AWARE`: channels, importance units, importance
            block map); options set explicitly are kept, and the report says
            what was chosen.

    Returns:
        A `GuideReport`.

    Raises:
        ValueError: unsupported or different families, an unbuilt model,
            different vocabularies, a student wider than the teacher, a
            narrower RoPE head, an invalid option, a data-aware choice
            without `calibration`, calibration data that is empty, too
            small or outside the vocabulary, a student that is the teacher or
            shares its variables, NaN or Inf in a teacher weight (named), or a
            `regularize` that is negative, NaN or infinite.

    Example:
    >>> report = guide(teacher_lm, student_lm, blocks="all")
    >>> print(report)

    Reference: arXiv 2510.06502.
    """
    if regularize is not None:
        check_strength(regularize, "regularize")
    _check_flags(center=center, rescale=rescale)
    chosen = _resolve(calibration, projection, select, layer_map)
    projection, select, layer_map = (
        chosen["projection"], chosen["select"], chosen["layer_map"])
    pair = _validate(teacher, student, blocks, layer_map, norm, select)
    if isinstance(projection, str) and projection == "auto":
        projection = "select" if pair.adapter.post_norm else "pca"
    stats = _calibrate(pair, calibration, projection, layer_map, select)
    pair = dataclasses.replace(
        pair, layer_map=_layer_map(layer_map, pair.d_t.num_layers, pair.d_s.num_layers, blocks, stats)
    )
    m = _projection(pair, projection, center, token_weights, stats)
    guided, selections = _plan(pair, m, norm, rescale, select, stats)
    _check_coverage(pair, guided)
    _apply(pair, guided, regularize)
    options = dict(
        blocks=blocks,
        layer_map=layer_map if isinstance(layer_map, str) else list(layer_map),
        projection=projection if isinstance(projection, str) else "given",
        center=center, norm=norm, rescale=rescale, regularize=regularize, select=select,
    )
    report = _report(pair, m, guided, options)
    report.recipe = "data-aware" if calibration is not None else "data-free"
    if stats is not None:
        report.calibration = dict(
            tokens=stats.tokens, seconds=stats.seconds, block_change=stats.block_change.tolist()
        )
    if select == "importance":
        report.selections = selections
    return report


@dataclasses.dataclass(frozen=True)
class _Pair:
    """A validated teacher and student: backbones, family, sizes, block map."""

    teacher: object
    student: object
    adapter: Adapter
    d_t: Dims
    d_s: Dims
    layer_map: list


@dataclasses.dataclass(frozen=True)
class _Guided:
    """One student weight's guided value (host float64) and its report row."""

    value: np.ndarray
    row: ReportRow


def _check_flags(**flags):
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"`{name}` must be True or False. Received: "
                             f"{name}={value!r}")


def _validate(teacher, student, blocks, layer_map, norm, select):
    """Checks the models and options; reads sizes, changes nothing."""
    for role, model in (("teacher", teacher), ("student", student)):
        if not isinstance(model, keras.Model):
            raise ValueError(
                f"The {role} must be a built KerasHub backbone or task model. "
                f"Received: {role}={model!r}"
            )
    t_backbone, s_backbone = backbone_of(teacher), backbone_of(student)
    _check_built(t_backbone, "teacher")
    _check_built(s_backbone, "student")
    adapter = shared_adapter(t_backbone, s_backbone)
    if adapter is None:
        raise ValueError(
            f"Teacher ({type(t_backbone).__name__}) and student "
            f"({type(s_backbone).__name__}) are of different families. Build "
            "the student with `keras_guide.build_student(teacher, ...)`."
        )
    _check_separate(t_backbone, s_backbone)
    if blocks not in _BLOCKS:
        raise ValueError(
            f"`blocks` must be one of {_BLOCKS}. Received: blocks={blocks!r}"
        )
    if norm not in _NORMS:
        raise ValueError(f"`norm` must be one of {_NORMS}. Received: norm={norm!r}")
    if select not in _SELECTS:
        raise ValueError(
            f"`select` must be one of {_SELECTS}. Received: select={select!r}"
        )
    adapter.check_options(t_backbone, s_backbone)
    d_t, d_s = adapter.dims(t_backbone), adapter.dims(s_backbone)
    _check_dims(adapter, d_t, d_s, t_backbone, s_backbone)
    # Checks an explicit or named map now; "importance" waits for calibration.
    mapping = _layer_map(layer_map, d_t.num_layers, d_s.num_layers, blocks, stats=False)
    return _Pair(t_backbone, s_backbone, adapter, d_t, d_s, mapping)


def _calibrate(pair, calibration, projection, layer_map, select):
    """Runs the teacher on the calibration text when a choice needs it."""
    from keras_guide import calibration as calibration_lib

    needs = [
        name for name, data_aware in (
            ("projection='" + str(projection) + "'",
             isinstance(projection, str) and projection in ("activations", "channels")),
            ("layer_map='importance'", isinstance(layer_map, str) and layer_map == "importance"),
            ("select='importance'", select == "importance"),
        ) if data_aware
    ]
    if calibration is None:
        if needs:
            raise ValueError(
                f"{', '.join(needs)} measure the teacher on calibration text; pass "
                "`calibration=` (token ids of shape (sequences, length) from the "
                "teacher's tokenizer, a few thousand tokens)."
            )
        return None
    if not needs:
        raise ValueError(
            "`calibration` was given but no choice uses it: pass "
            "projection='activations', select='importance' and/or "
            "layer_map='importance'."
        )
    if isinstance(calibration, calibration_lib.ActivationStatistics):
        _check_statistics(calibration, pair)
        return calibration
    teacher, d_t = pair.teacher, pair.d_t
    _check_teacher_finite(teacher)
    batches = calibration_lib.calibration_batches(
        calibration, list(teacher.input.keys()) if isinstance(teacher.input, dict) else ["token_ids"],
        d_t.vocabulary_size, max_length=d_t.max_sequence_length,
    )
    tokens = sum(int(b["padding_mask"].astype(bool).sum()) for b in batches)
    if needs[0].startswith("projection") and tokens < d_t.hidden_dim:
        raise ValueError(
            f"The calibration text has {tokens} tokens; the activation basis "
            f"estimates a {d_t.hidden_dim} x {d_t.hidden_dim} second moment of the "
            f"residual stream and needs at least {d_t.hidden_dim} tokens (a few "
            "thousand give a stable basis)."
        )
    return calibration_lib.collect_statistics(teacher, batches)


def _check_statistics(stats, pair):
    """Refuses statistics of another teacher (their shapes say so)."""
    d_t = pair.d_t
    expected = ((d_t.hidden_dim, d_t.hidden_dim), d_t.num_layers)
    found = (tuple(stats.gram.shape), len(stats.block_change))
    if found != expected:
        raise ValueError(
            f"The calibration statistics are of a model with a {found[0]} stream "
            f"second moment and {found[1]} blocks; this teacher has {expected[0]} "
            f"and {expected[1]}. Collect them on this teacher "
            "(`keras_guide.calibration.collect_statistics(teacher, batches)`)."
        )


def _check_built(model, role):
    if not model.built or not model.weights:
        raise ValueError(
            f"The {role} `{model.name}` is not built. Build it first (KerasHub "
            "backbones are built on construction; call the model on a batch "
            "or `model.build(...)` otherwise)."
        )


def _check_separate(teacher, student):
    """Refuses a student that is the teacher or shares any of its variables:
    guiding it would overwrite the teacher."""
    teacher_ids = {id(w) for w in teacher.weights}
    shared = [w.path for w in student.weights if id(w) in teacher_ids]
    if shared:
        what = "is" if student is teacher else "shares variables with"
        raise ValueError(
            f"The student `{student.name}` {what} the teacher `{teacher.name}` "
            f"({len(shared)} shared weights, e.g. `{shared[0]}`): guiding it "
            "would overwrite the teacher. Build a separate student with "
            "`keras_guide.build_student(teacher, ...)`. Received: "
            f"student={student.name!r}, teacher={teacher.name!r}"
        )


def _check_teacher_finite(teacher):
    """Refuses a teacher with NaN or Inf in any float weight (a forward pass
    reads them all), naming the first; checked on the devices, weight by
    weight."""
    for weight in teacher.weights:
        if not keras.backend.is_float_dtype(weight.dtype):
            continue
        finite = keras.ops.isfinite(weight)
        if not bool(keras.ops.convert_to_numpy(keras.ops.all(finite))):
            bad = int(np.prod(weight.shape)) - int(
                keras.ops.convert_to_numpy(keras.ops.count_nonzero(finite))
            )
            shape = tuple(weight.shape)
            _host.check_finite(np.zeros(0), weight.path, shape=shape, bad=bad)


def _layer_map(layer_map, n_teacher, n_student, blocks, stats):
    """The teacher block of each guided student block (`stats=False`: not
    measured yet, so `"importance"` is only checked)."""
    if isinstance(layer_map, str):
        if layer_map not in _LAYER_MAPS:
            raise ValueError(
                f"`layer_map` must be one of {_LAYER_MAPS} or a list of teacher "
                f"block indices. Received: layer_map={layer_map!r}"
            )
        if layer_map == "importance":
            if not stats:
                return None
            mapping = importance.important_blocks(stats.block_change, n_student)
        elif layer_map == "uniform":
            mapping = selection.uniform_indices(n_teacher, n_student, "blocks").tolist()
        else:
            mapping = list(range(n_student))
    else:
        try:
            items = list(layer_map)
        except TypeError:
            items = [None]
        if not all(isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))
                   for i in items):
            raise ValueError(
                "An explicit `layer_map` is a list of whole teacher block indices "
                f"(not floats or booleans). Received: layer_map={layer_map!r}"
            )
        mapping = [int(i) for i in items]
        if len(mapping) != n_student or not all(0 <= i < n_teacher for i in mapping):
            raise ValueError(
                f"An explicit `layer_map` needs one teacher block index in "
                f"[0, {n_teacher}) per student block ({n_student}). Received: "
                f"layer_map={mapping}"
            )
    return mapping[:1] if blocks == "first" else mapping


def _check_dims(adapter, d_t, d_s, teacher, student):
    if d_t.vocabulary_size != d_s.vocabulary_size:
        raise ValueError(
            f"Teacher and student vocabularies differ ({d_t.vocabulary_size} vs "
            f"{d_s.vocabulary_size}); GUIDE needs a shared tokenizer. Build the "
            "student with the teacher's vocabulary_size."
        )
    wider = [
        f"{field.name}: student {getattr(d_s, field.name)} > teacher {getattr(d_t, field.name)}"
        for field in dataclasses.fields(d_t)
        if field.name not in ("vocabulary_size", "num_layers", "rotary")
        and getattr(d_t, field.name) is not None
        and getattr(d_s, field.name) > getattr(d_t, field.name)
    ]
    if wider:
        raise ValueError(
            f"The student `{student.name}` is wider than the teacher "
            f"`{teacher.name}` ({'; '.join(wider)}). GUIDE only shrinks: make "
            "every student size at most the teacher's."
        )
    if d_t.rotary and d_s.head_dim != d_t.head_dim:
        raise ValueError(
            f"The {adapter.family} student has head_dim {d_s.head_dim}, the "
            f"teacher {d_t.head_dim}; with rotary embeddings a narrower head "
            "changes every rotation frequency. Keep the head width and drop "
            "heads instead (e.g. num_heads = hidden_dim // "
            f"{d_t.head_dim})."
        )
    t_group = d_t.num_heads // d_t.num_key_value_heads
    s_group = d_s.num_heads // d_s.num_key_value_heads
    if s_group > t_group:
        raise ValueError(
            f"The student has {s_group} query heads per key/value head, the "
            f"teacher {t_group}; grouped-query groups cannot grow. Use at most "
            f"{t_group * d_s.num_key_value_heads} query heads, or more key/value heads."
        )


def _plan(pair, m, norm, rescale, select, stats):
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
        units = uniform if select == "uniform" else _important_units(stats, t_index, d_t, d_s, uniform)
        selections[s_index] = {k: units[k].tolist() for k in ("heads", "kv_heads", "neurons")}
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
        stats.head_energy[block], d_t.num_key_value_heads, d_s.num_heads,
        d_s.num_key_value_heads,
    )
    neurons = importance.top_indices(
        stats.neuron_energy[block], d_s.intermediate_dim, "MLP neurons"
    )
    return dict(uniform, heads=q_heads, kv_heads=kv_heads, neurons=neurons)


def _check_coverage(pair, guided):
    """Every student weight is guided, or belongs to a block left random on purpose
    (`blocks="first"`); anything else is refused before the student is touched."""
    adapter, student = pair.adapter, pair.student
    skipped = {
        path
        for index in range(len(pair.layer_map), pair.d_s.num_layers)
        for item in adapter.block(student, index)
        for path in item_paths(item)
    }
    guided_paths = {g.row.student for g in guided}
    missed = [w.path for w in student.weights if w.path not in guided_paths | skipped]
    if missed:
        raise ValueError(
            f"The {adapter.family} adapter sets no value for {len(missed)} weights of "
            f"the student `{student.name}`: {missed[:8]}"
            f"{' ...' if len(missed) > 8 else ''}. The student's layout is one the "
            "adapter does not describe (a newer KerasHub, or options it does not "
            "know); nothing was changed."
        )


def _apply(pair, guided, regularize):
    """Checks every guided value's shape against the student, then assigns them all."""
    values = {g.row.student: g.value for g in guided}
    student_weights = {w.path: w for w in pair.student.weights}
    for path, value in values.items():
        variable = student_weights.get(path)
        if variable is None or tuple(variable.shape) != value.shape:
            raise ValueError(
                f"The {pair.adapter.family} adapter computed `{path}` with shape "
                f"{value.shape}, but the student has "
                f"{'no such weight' if variable is None else tuple(variable.shape)}. "
                "The student does not match its family's layout."
            )
        _check_fits(path, value, variable.dtype)
    strength = None
    if regularize is not None:
        strength = keras.Variable(float(regularize), dtype="float32", trainable=False, name="guide_strength")
    for path, value in values.items():
        variable = student_weights[path]
        variable.assign(to_dtype(value, variable.dtype))
        if strength is not None and variable.trainable:
            variable.regularizer = GuideRegularizer(value, strength)
    if strength is not None:
        track_guide_state(pair.student)


def _check_fits(path, value, dtype):
    """Refuses a guided value its weight's dtype cannot hold (float16 tops out
    at 65,504): it would be stored as inf."""
    dtype = str(getattr(dtype, "name", dtype))
    if dtype not in ("float16", "bfloat16"):
        return
    largest = float(np.finfo(np.float16).max) if dtype == "float16" else 3.39e38
    peak = float(np.max(np.abs(value))) if np.size(value) else 0.0
    if peak > largest:
        raise ValueError(
            f"The guided `{path}` reaches {peak:.4g}, beyond {dtype}'s largest "
            f"value {largest:.6g}: it would be stored as inf. Build the student "
            "in float32 or bfloat16 (build_student(..., dtype='float32'))."
        )


def _report(pair, m, guided, options):
    """The `GuideReport`: the guided rows, then a row for each weight kept random
    (only the blocks that `blocks="first"` leaves to their initializers)."""
    rows = [g.row for g in guided]
    guided_paths = {row.student for row in rows}
    rows += [
        ReportRow(w.path, None, "kept random", None, tuple(w.shape))
        for w in pair.student.weights
        if w.path not in guided_paths
    ]
    return GuideReport(
        family=pair.adapter.family, projection=m, layer_map=pair.layer_map,
        entries=rows, options=options,
    )


def _projection(pair, projection, center, token_weights, stats):
    """`M`: from the token table, the calibration activations, a selection, or given."""
    table = next(w for w in pair.teacher.weights if w.path == pair.adapter.embeddings(pair.teacher)[0].path)
    d_t, d_s = int(table.shape[1]), pair.d_s.hidden_dim
    mean_preserving = pair.adapter.norm_kind == "layer"
    if isinstance(projection, str):
        if projection == "pca":
            return projection_lib.pca_projection(
                table, d_s, center=center, mean_preserving=mean_preserving,
                weights=token_weights, name=table.path,
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
            "`projection` must be 'auto', 'pca', 'activations', 'channels', 'select', a "
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
        read_norms = {item.norm for item in t_items if isinstance(item, Read) and item.norm is not None}
        # An untied student head reads the final norm: its gain folds there.
        read_norms |= {s.norm for s in s_items if isinstance(s, Head) and s.reverse is not None}
        # A √d-scaled table (Gemma) already carries √(d_T/d_S) into the tied
        # head's logits; the final norm then must not add it again.
        scaled_table = any(isinstance(item, Table) and item.sqrt_d_scaled for item in t_items)
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
        return _Guided(value, ReportRow(s_path, t_path, how, t_shape, tuple(value.shape)))

    def _table(self, t, s):
        table = self.teacher[t.path]
        rows_t = int(table.shape[0])
        scale = self.ratio if (t.sqrt_d_scaled and self.rescale) else 1.0
        rows_s = self.student_shapes[s.path][0] if s.path in self.student_shapes else rows_t
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
        how = "pca" if t.path == self.source and self.m.kind.startswith("pca") else "projected"
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
            bias = folding.fold_shift(kernel, self._array(t.norm.shift), t.d_axis, bias, name=t.path)
        bias_project = {t.out_axis - 1: self.m} if t.out_axis is not None else {}
        bias_select = self._select(t.select, shift_axis=t.d_axis)
        bias_scale = self.query_scale if t.query else 1.0
        value = guided_value(bias, self._shape(bias.shape, bias_project, bias_select),
                             bias_project, bias_select, scale=bias_scale, name=t.bias)
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
        value = guided_value(kernel, self._shape(kernel.shape, project, select), project, select, name=t.path)
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


def build_student(teacher, name=None, dtype=None, tie_embeddings=None, **sizes):
    """Builds a randomly initialized student from the teacher's config.

    `sizes` uses generic names (`hidden_dim`, `num_layers`, `num_heads`,
    `num_key_value_heads`, `intermediate_dim`, `head_dim`,
    `max_sequence_length`), translated to the family's own argument names;
    values are in the backbone config's own units. A task-model teacher gives
    a task model of the same class sharing the teacher's preprocessor.

    Args:
        teacher: a KerasHub backbone or task model.
        name: the student's name.
        dtype: the student's dtype policy; `None` keeps the teacher's.
        tie_embeddings: whether the student's output head is its token table;
            `None` keeps the teacher's choice. An untied student of a tied
            teacher gets the teacher's final norm gain folded into its own
            head (exact; costs `V · d_S` parameters). Only for families that
            have the option (Llama, Qwen, ...).
        **sizes: the student's sizes.

    Returns:
        The student, built, of the teacher's class, trainable even when the
        teacher is frozen.

    Raises:
        ValueError: a size the family does not have, or `tie_embeddings` for a
            family that always ties.
    """
    t_backbone = backbone_of(teacher)
    adapter = adapter_for(t_backbone)
    unknown = sorted(set(sizes) - set(adapter.config_keys))
    if unknown:
        raise ValueError(
            f"The {adapter.family} family has no size {unknown}; it accepts "
            f"{sorted(adapter.config_keys)}. Received: {sizes}"
        )
    config = t_backbone.get_config()
    for key, value in sizes.items():
        config[adapter.config_keys[key]] = value
    if adapter.tie_option is not None:
        # Some backbones (Llama) leave the tie out of their config.
        config[adapter.tie_option] = (
            adapter.tied(t_backbone) if tie_embeddings is None else bool(tie_embeddings)
        )
    elif tie_embeddings is not None and bool(tie_embeddings) != adapter.tied(t_backbone):
        always = (
            "ties its output head to" if adapter.tied(t_backbone)
            else "keeps its output head apart from"
        )
        raise ValueError(
            f"The {adapter.family} family always {always} the token table. "
            f"Received: tie_embeddings={tie_embeddings!r}"
        )
    config["name"] = name or f"{t_backbone.name}_student"
    # A frozen teacher (the usual case beside a Distiller) must not give a
    # frozen student: its config carries `trainable=False` on some backends.
    config["trainable"] = True
    if dtype is not None:
        config["dtype"] = dtype
    s_backbone = type(t_backbone).from_config(config)
    if t_backbone is teacher:
        return s_backbone
    task_config = teacher.get_config()
    task_config.update(backbone=s_backbone, preprocessor=teacher.preprocessor,
                       name=config["name"] + "_task", trainable=True)
    return type(teacher).from_config(task_config)


def guided_student(teacher, guide_options=None, name=None, **sizes):
    """`build_student(teacher, **sizes)` then `guide(teacher, student, **guide_options)`.

    Returns:
        `(student, report)`.
    """
    student = build_student(teacher, name=name, **sizes)
    return student, guide(teacher, student, **(guide_options or {}))


def weight_selection(teacher, student):
    """Uniform weight selection (Xu et al. 2023, "Initializing Models with Larger Ones").

    The peer baseline GUIDE is measured against: every student weight is the
    teacher's weight at uniformly selected indices on every axis (the residual
    stream included), blocks taken first-N, norms selected, no rescaling.
    Equivalent to `guide(teacher, student, blocks="all", layer_map="first",
    projection="select", norm="diagonal", rescale=False)`.

    Returns:
        A `GuideReport`.
    """
    return guide(
        teacher, student, blocks="all", layer_map="first",
        projection="select", norm="diagonal", rescale=False,
    )
