"""`guide(teacher, student)`: check the options, validate the models, run the
teacher on calibration text if a choice needs it, plan every student weight
(`plan.py`), check and assign them all, report (`report.py`)."""

import dataclasses

import keras
import numpy as np

from keras_guide import _host
from keras_guide.adapters import backbone_of
from keras_guide.adapters import shared_adapter
from keras_guide.adapters.base import item_paths
from keras_guide.guide import plan
from keras_guide.guide.options import GuideOptions
from keras_guide.guide.report import GuideReport
from keras_guide.guide.report import ReportRow
from keras_guide.initializers.guided_initializer import check_fits
from keras_guide.initializers.guided_initializer import to_dtype
from keras_guide.regularizers import GuideRegularizer
from keras_guide.regularizers import track_guide_state


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
        teacher: a `keras_hub.models.Backbone` or a KerasHub task model (e.g.
            `GPT2CausalLM`).
        student: a `keras.Model`. A built model of the same family, no wider
            on any axis.
        blocks: str. `"first"` (the paper: embeddings and the first block; the
            other blocks keep their random initialization) or `"all"`.
            Defaults to `"all"`.
        layer_map: str, list of int or None. How student blocks pick teacher
            blocks: `"uniform"`, `"first"`, `"importance"` (the blocks that
            change the stream most on the calibration text, in order; needs
            `calibration`), or a list of teacher block indices. Defaults to
            `None` (`"importance"` with `calibration`, else `"uniform"`).
        projection: str, array or `Projection`. `"pca"` (GUIDE: the token
            table's principal directions), `"activations"` (the principal
            directions of the residual stream on the calibration text, every
            block boundary and token weighed alike; needs `calibration`),
            `"channels"` (the `d_S` residual channels with the most activation
            energy on the calibration text, kept as they are: a selection, so
            a tied head's final gain stays exact; needs `calibration`),
            `"select"` (identity columns at uniformly selected indices:
            uniform weight selection, Xu et al. 2023), a `(d_T, d_S)` matrix /
            `Projection`, or `"auto"` (the default): `"channels"` with
            `calibration`; without it `"pca"`,
            except for post-norm encoders (BERT), whose stream carries
            elementwise norm gains that a rotation cannot (`"select"`). For
            LayerNorm families the PCA bases are built mean-preserving so the
            fold stays exact. Defaults to `"auto"`.
        center: bool. Centre the table before the PCA. Defaults to `False`.
        norm: str. `"diagonal"` (student gain `diag(Mᵀ diag(γ) M)`, readers
            plain: the closest per-coordinate gain, nothing moved into the
            readers), `"fold"` (exact: gains folded into readers, student
            gains 1; a full-width student reproduces its teacher only with
            it) or `"reset"` (student gains 1, nothing folded). The README
            compares them. Defaults to `"diagonal"`.
        rescale: bool. Apply the width ratios that keep magnitudes
            (`√(d_T/d_S)` on unfolded norms and Gemma's table, `√(ℓ_T/ℓ_S)` on
            queries when heads narrow). Uniform weight selection uses `False`.
            Defaults to `True`.
        token_weights: array or None. Optional `(V,)` token frequencies for a
            weighted PCA. Defaults to `None` (every token weighs alike).
        regularize: float or None. `None`, or a strength `λ`: attach a
            `GuideRegularizer` (one shared strength variable) to every guided
            weight, its target the guided value. Defaults to `None` (no
            regularizer).
        select: str or None. How heads, key/value groups and MLP neurons are
            kept: `"uniform"` (the paper's rule, the same indices in every
            block) or `"importance"` (per block, the units that write the most
            energy into the stream on the calibration text; needs
            `calibration`). Defaults to `None` (`"importance"` with
            `calibration`, else `"uniform"`).
        calibration: array, batches, `ActivationStatistics` or None. Text for
            the data-aware choices: token ids of shape
            `(sequences, length)`, or batches of them (arrays, input dicts,
            `(x, y)` tuples, a `tf.data.Dataset`); see
            `keras_guide.calibration.calibration_batches`. The teacher runs
            on it once, in inference mode, and is not changed. Or the
            `ActivationStatistics` such a pass returned
            (`keras_guide.calibration.collect_statistics`), to guide several
            students from one pass. Given alone, it applies the data-aware
            recipe (`DATA_AWARE`: channels, importance units, importance
            block map); options set explicitly are kept, and the report says
            what was chosen. Defaults to `None` (the data-free recipe, no
            teacher pass).

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
    options = GuideOptions(
        blocks=blocks,
        layer_map=layer_map,
        projection=projection,
        center=center,
        norm=norm,
        rescale=rescale,
        token_weights=token_weights,
        regularize=regularize,
        select=select,
        calibrated=calibration is not None,
    )
    pair = _validate(teacher, student, options)
    projection = options.projection
    if isinstance(projection, str) and projection == "auto":
        projection = "select" if pair.adapter.post_norm else "pca"
    stats = _calibrate(pair, calibration, options, projection)
    pair = dataclasses.replace(
        pair,
        layer_map=plan.layer_map(
            options.layer_map,
            pair.d_t.num_layers,
            pair.d_s.num_layers,
            options.blocks,
            stats,
        ),
    )
    m = plan.projection(pair, projection, options.center, options.token_weights, stats)
    guided, selections = plan.plan(
        pair, m, options.norm, options.rescale, options.select, stats
    )
    _check_coverage(pair, guided)
    _apply(pair, guided, options.regularize)
    return _report(pair, m, guided, options, projection, stats, selections)


def _validate(teacher, student, options):
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
    adapter.check_options(t_backbone, s_backbone)
    d_t, d_s = adapter.dims(t_backbone), adapter.dims(s_backbone)
    _check_dims(adapter, d_t, d_s, t_backbone, s_backbone)
    # Checks an explicit or named map now; "importance" waits for calibration.
    mapping = plan.layer_map(
        options.layer_map, d_t.num_layers, d_s.num_layers, options.blocks, stats=False
    )
    return plan.Pair(t_backbone, s_backbone, adapter, d_t, d_s, mapping)


def _calibrate(pair, calibration, options, projection):
    """Runs the teacher on the calibration text when a choice needs it (the
    options have checked that one does exactly when calibration is given)."""
    from keras_guide import calibration as calibration_lib

    if calibration is None:
        return None
    if isinstance(calibration, calibration_lib.ActivationStatistics):
        _check_statistics(calibration, pair)
        return calibration
    teacher, d_t = pair.teacher, pair.d_t
    _check_teacher_finite(teacher)
    batches = calibration_lib.calibration_batches(
        calibration,
        list(teacher.input.keys())
        if isinstance(teacher.input, dict)
        else ["token_ids"],
        d_t.vocabulary_size,
        max_length=d_t.max_sequence_length,
        num_segments=getattr(backbone_of(teacher), "num_segments", None),
    )
    tokens = sum(int(b["padding_mask"].astype(bool).sum()) for b in batches)
    if projection in ("activations", "channels") and tokens < d_t.hidden_dim:
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


def _check_dims(adapter, d_t, d_s, teacher, student):
    if d_t.vocabulary_size != d_s.vocabulary_size:
        raise ValueError(
            f"Teacher and student vocabularies differ ({d_t.vocabulary_size} vs "
            f"{d_s.vocabulary_size}); GUIDE needs a shared tokenizer. Build the "
            "student with the teacher's vocabulary_size."
        )
    wider = [
        f"{field.name}: student {getattr(d_s, field.name)} > "
        f"teacher {getattr(d_t, field.name)}"
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
        check_fits(value, variable.dtype, path)
    strength = None
    if regularize is not None:
        strength = keras.Variable(
            float(regularize), dtype="float32", trainable=False, name="guide_strength"
        )
    for path, value in values.items():
        variable = student_weights[path]
        variable.assign(to_dtype(value, variable.dtype))
        if strength is not None and variable.trainable:
            variable.regularizer = GuideRegularizer(value, strength)
        elif isinstance(variable.regularizer, GuideRegularizer):
            # An earlier guide's pull toward values just replaced.
            variable.regularizer = None
    track_guide_state(pair.student)


def _report(pair, m, guided, options, projection, stats, selections):
    """The `GuideReport`: the guided rows, then a row for each weight kept random
    (only the blocks that `blocks="first"` leaves to their initializers); the
    options as resolved (`projection` as `"auto"` chose it), and what the
    calibration pass measured."""
    rows = [g.row for g in guided]
    guided_paths = {row.student for row in rows}
    rows += [
        ReportRow(w.path, None, "kept random", None, tuple(w.shape))
        for w in pair.student.weights
        if w.path not in guided_paths
    ]
    layer_map = options.layer_map
    calibration = (
        None
        if stats is None
        else dict(
            tokens=stats.tokens,
            seconds=stats.seconds,
            block_change=stats.block_change.tolist(),
        )
    )
    return GuideReport(
        family=pair.adapter.family,
        projection=m,
        layer_map=pair.layer_map,
        entries=rows,
        options=dict(
            blocks=options.blocks,
            layer_map=layer_map if isinstance(layer_map, str) else list(layer_map),
            projection=projection if isinstance(projection, str) else "given",
            center=options.center,
            norm=options.norm,
            rescale=options.rescale,
            regularize=options.regularize,
            select=options.select,
        ),
        recipe=options.recipe,
        calibration=calibration,
        selections=selections if options.select == "importance" else None,
    )


def weight_selection(teacher, student):
    """Uniform weight selection (Xu et al. 2023, "Initializing Models with
    Larger Ones").

    The peer baseline GUIDE is measured against: every student weight is the
    teacher's weight at uniformly selected indices on every axis (the residual
    stream included), blocks taken first-N, norms selected, no rescaling.
    Equivalent to `guide(teacher, student, blocks="all", layer_map="first",
    projection="select", norm="diagonal", rescale=False)`.

    Args:
        teacher: a `keras_hub.models.Backbone` or a KerasHub task model.
        student: a `keras.Model`. A built model of the same family, no wider
            on any axis.

    Returns:
        A `GuideReport`.
    """
    return guide(
        teacher,
        student,
        blocks="all",
        layer_map="first",
        projection="select",
        norm="diagonal",
        rescale=False,
    )
