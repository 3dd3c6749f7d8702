"""`sharding_layouts` and `check_sharding` on every family (no devices needed: the
mesh lists device names only, and only paths and shapes are read)."""

import keras
import pytest

from keras_guide import build_student
from keras_guide.distribution import check_sharding
from keras_guide.distribution import sharding_layouts
from tests.harness.families import FAMILIES
from tests.harness.families import canonical


def _mesh(batch=1, model=2):
    devices = [f"cpu:{i}" for i in range(batch * model)]
    return keras.distribution.DeviceMesh((batch, model), ("batch", "model"), devices)


# The harness students with one key/value head cannot be split in two.
_KV_OVERRIDES = {"gemma": 2, "qwen3": 2, "gemma2": 2, "gemma3": 2}


def _pair(name):
    import keras_hub

    family = FAMILIES[name]
    sizes = {k: v for k, v in family.narrow.items() if k != "num_layers"}
    if name in _KV_OVERRIDES:
        sizes["num_key_value_heads"] = _KV_OVERRIDES[name]
    with keras.StatelessScope():
        teacher = getattr(keras_hub.models, family.backbone)(**family.config)
        student = build_student(teacher, **sizes)
    return teacher, student


def _axes(layouts, variable):
    layout = layouts[variable.path]
    return tuple(layout.axes) if layout is not None else (None,) * len(variable.shape)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_weight_of_both_models_gets_a_divisible_layout(name):
    teacher, student = _pair(name)
    mesh = _mesh()
    layouts = sharding_layouts(teacher, student, mesh)
    sharded = 0
    for model in (teacher, student):
        for variable in model.weights:
            axes = _axes(layouts, variable)
            assert len(axes) == len(variable.shape), variable.path
            for size, axis in zip(variable.shape, axes):
                if axis is not None:
                    sharded += 1
                    assert size % 2 == 0, (variable.path, variable.shape, axes)
    # Every block's attention and MLP kernels are split, in both models.
    assert sharded >= 2 * 5 * 2


@pytest.mark.parametrize("name", ["llama", "gemma", "gemma2", "qwen"])
def test_families_with_their_own_layout_map_use_it_unchanged(name):
    teacher, student = _pair(name)
    mesh = _mesh()
    ours = sharding_layouts(teacher, student, mesh)
    theirs = type(teacher).get_layout_map(mesh)
    assert sorted(ours.keys()) == sorted(theirs.keys())
    for key in theirs:
        assert ours[key].axes == theirs[key].axes


_ADAPTER_LAYOUTS = [
    "gpt2",
    "bert",
    "qwen3",
    "gemma3",
    "mistral",
    "phi3",
    "mixtral",
    "roberta",
    "xlm_roberta",
    "distil_bert",
]


def _split_on(axis, rank):
    return tuple("model" if i == axis else None for i in range(rank))


@pytest.mark.parametrize("name", _ADAPTER_LAYOUTS)
def test_adapter_layouts_split_heads_and_neurons_megatron_style(name):
    import keras_hub

    family = FAMILIES[name]
    assert not hasattr(getattr(keras_hub.models, family.backbone), "get_layout_map")
    teacher, student = _pair(name)
    layouts = sharding_layouts(teacher, student, _mesh())
    block = family.block.format(0)
    weights = {canonical(w.path): w for w in student.weights}
    query, query_heads_axis = family.query
    # Readers: the query heads axis of the query kernel.
    assert _axes(layouts, weights[f"{block}/{query}"]) == _split_on(query_heads_axis, 3)
    # Writers: heads axis (0) of the (heads, head_dim, d) output kernel.
    assert _axes(layouts, weights[f"{block}/{family.attention_output[0]}"]) == (
        "model",
        None,
        None,
    )
    # The MLP output kernel (neurons, d; Mixtral's experts, neurons, d)
    # splits its neurons axis.
    mlp_output = weights[f"{block}/{family.mlp_output[0]}"]
    assert _axes(layouts, mlp_output) == _split_on(
        family.neuron_axis, len(mlp_output.shape)
    )
    # The token table is vocabulary-parallel; norms stay replicated.
    assert _axes(layouts, weights[_token_table(name)]) == ("model", None)
    norms = [w for p, w in weights.items() if p.endswith(("gamma", "beta", "scale"))]
    assert norms and all(layouts[w.path] is None for w in norms)


def _token_table(name):
    from keras_guide.adapters import adapter_for

    teacher, _ = _pair(name)
    return adapter_for(teacher).embeddings(teacher)[0].path


def test_vocabulary_the_mesh_does_not_divide_keeps_the_table_replicated():
    import keras_hub

    with keras.StatelessScope():
        teacher = keras_hub.models.GPT2Backbone(
            vocabulary_size=63,
            num_layers=1,
            num_heads=4,
            hidden_dim=16,
            intermediate_dim=32,
            max_sequence_length=8,
        )
        student = build_student(teacher, hidden_dim=8, num_heads=2, intermediate_dim=16)
    layouts = sharding_layouts(teacher, student, _mesh())
    assert layouts["token_embedding/embeddings"] is None


def test_indivisible_student_heads_name_weight_shape_and_mesh():
    import keras_hub

    with keras.StatelessScope():
        teacher = keras_hub.models.GPT2Backbone(
            vocabulary_size=64,
            num_layers=1,
            num_heads=4,
            hidden_dim=16,
            intermediate_dim=32,
            max_sequence_length=8,
        )
        student = build_student(
            teacher, hidden_dim=12, num_heads=3, intermediate_dim=16
        )
    with pytest.raises(ValueError) as error:
        sharding_layouts(teacher, student, _mesh())
    message = str(error.value)
    assert (
        "student's weight `transformer_layer_0/self_attention/query/kernel`" in message
    )
    assert "(12, 3, 4)" in message and "{'batch': 1, 'model': 2}" in message
    assert "not a multiple of 2" in message


def test_kerashub_layout_checked_on_the_batch_axis_too():
    # Llama's own map splits key/value heads on `batch`: 2 kv heads on 4.
    teacher, student = _pair("llama")
    with pytest.raises(
        ValueError, match=r"key/kernel.*not a multiple of 4 \(mesh axes \('batch',\)\)"
    ):
        sharding_layouts(teacher, student, _mesh(batch=4, model=1))


def test_invalid_mesh_axes_and_mixed_families_are_refused():
    teacher, student = _pair("gpt2")
    with pytest.raises(
        ValueError, match="`model_dim` must name an axis.*Received: model_dim='tensor'"
    ):
        sharding_layouts(teacher, student, _mesh(), model_dim="tensor")
    with pytest.raises(ValueError, match="`device_mesh` must be a"):
        sharding_layouts(teacher, student, (1, 2))
    other, _ = _pair("llama")
    with pytest.raises(ValueError, match="must be of one family"):
        sharding_layouts(teacher, other, _mesh())


def test_family_is_the_adapter_as_in_guide():
    import keras_hub

    class CustomGPT2(keras_hub.models.GPT2Backbone):
        pass

    teacher, student = _pair("gpt2")
    with keras.StatelessScope():
        custom = CustomGPT2.from_config(student.get_config())
    # A subclass keeps the family's weight paths, so it shares the layout map.
    layouts = sharding_layouts(teacher, custom, _mesh())
    query = layouts["transformer_layer_0/self_attention/query/kernel"]
    assert tuple(query.axes) == (None, "model", None)
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"No GUIDE adapter for Sequential.*gpt2"):
        sharding_layouts(teacher, plain, _mesh())


def test_check_sharding_rejects_a_rank_mismatch():
    teacher, student = _pair("gpt2")
    layouts = keras.distribution.LayoutMap(_mesh())
    layouts["token_embedding/embeddings"] = ("model",)
    with pytest.raises(
        ValueError, match=r"has rank 1, the weight has shape \(64, 16\)"
    ):
        check_sharding(layouts, {"teacher": teacher})
