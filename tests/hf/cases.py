"""The tiny models `tests/hf/` writes, and the texts it tokenizes."""

import keras
import numpy as np

import keras_guide
from keras_guide.gguf import load_gguf
from tests.gguf.llama_cpp_test import TEXTS
from tests.harness import gguf_files as tiny

# Chat markers of both tiny vocabularies, and Gemma-style markup.
HARD_TEXTS = TEXTS + [
    "<|im_start|>system\nhi<|im_end|>\n<|im_start|>user\n",
    "<bos><eos> <unk><pad>x",
    "  \n\t x  ",
]
SEQ = 12  # longer than the tiny Gemma's sliding window of 3: both masks used
# Generated from by all three runtimes: the untied student's greedy path is
# not degenerate (23 distinct tokens of 32, each chosen by a margin of at
# least 0.015 in the logits, far above float32 round-off between runtimes).
GENERATOR = "llama-untied"
PROMPT = "The quick brown fox jumps over the lazy dog."
STEPS = 32
# SmolLM2's chat format, carried by the byte-level teacher's GGUF file.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
# Gemma's, carried by the SentencePiece teacher's.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + "
    "message['role'] + '\\n' + message['content'] + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}"
    "{% endif %}"
)
GEMMA_CHAT = "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"


def _teacher(tmp_path, name, write, **kwargs):
    return write(tmp_path / f"{name}.gguf", quant=tiny.Q.F32, **kwargs)


def _student(path, seed, **sizes):
    teacher = load_gguf(path)
    keras.utils.set_random_seed(seed)
    student = keras_guide.build_student(teacher, **sizes)
    keras_guide.guide(teacher, student)
    return student


def _rope_scaled_backbone(**rope):
    """A random Llama 3 backbone over the tiny vocabulary, with RoPE scaling."""
    import keras_hub

    keras.utils.set_random_seed(3)
    return keras_hub.models.Llama3Backbone(
        vocabulary_size=len(tiny.bpe_vocabulary()[0]),
        num_layers=1,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=32,
        tie_word_embeddings=False,
        **rope,
    )


def build(tmp_path):
    """`{name: (model, metadata_from)}` of the tiny models written."""
    bpe = _teacher(
        tmp_path,
        "bpe",
        tiny.write_llama,
        metadata={"tokenizer.chat_template": CHAT_TEMPLATE},
    )
    untied = _teacher(tmp_path, "untied", tiny.write_llama, tied=False)
    spm = _teacher(
        tmp_path,
        "spm",
        tiny.write_llama,
        tokenizer="llama",
        metadata={"tokenizer.ggml.unknown_token_id": 3},
    )
    gemma = _teacher(
        tmp_path,
        "gemma",
        tiny.write_gemma3,
        layers=8,
        strings={"tokenizer.chat_template": GEMMA_CHAT_TEMPLATE},
    )
    return {
        # Two query heads share one key-value head; the head is the table.
        "llama-gqa-tied": (
            _student(
                bpe,
                0,
                num_layers=2,
                hidden_dim=16,
                num_heads=2,
                num_key_value_heads=1,
                intermediate_dim=40,
            ),
            None,
        ),
        "llama-untied": (
            _student(
                untied,
                1,
                num_layers=1,
                hidden_dim=32,
                num_heads=4,
                num_key_value_heads=2,
                intermediate_dim=40,
            ),
            None,
        ),
        # SentencePiece (Llama 2), untied from a tied teacher.
        "llama-sentencepiece": (
            _student(
                spm,
                2,
                tie_embeddings=False,
                num_layers=1,
                hidden_dim=16,
                num_heads=2,
                num_key_value_heads=2,
                intermediate_dim=40,
            ),
            None,
        ),
        # Seven blocks: five sliding-window, a global one, a sliding one; heads
        # 16 wide in a 24-wide model.
        "gemma3": (
            _student(
                gemma,
                3,
                num_layers=7,
                hidden_dim=24,
                num_heads=2,
                num_key_value_heads=1,
                intermediate_dim=40,
            ),
            None,
        ),
        # Backbones (the tokenizer from the GGUF file).
        "llama3-rope-llama3": (
            _rope_scaled_backbone(
                rope_frequency_adjustment_factor=8.0,
                rope_low_freq_factor=1.0,
                rope_high_freq_factor=4.0,
                rope_pretraining_sequence_length=16,
            ),
            bpe,
        ),
        "llama3-rope-linear": (
            _rope_scaled_backbone(rope_position_scaling_factor=4.0),
            bpe,
        ),
    }


def ids_of(model):
    backbone = getattr(model, "backbone", model)
    return tiny.token_ids(backbone.vocabulary_size, seed=1, length=SEQ).tolist()


def keras_logits(model, ids):
    x = {
        "token_ids": np.asarray([ids], "int32"),
        "padding_mask": np.ones((1, len(ids)), "int32"),
    }
    out = model(x)
    if not hasattr(model, "backbone"):  # a backbone: its hidden states
        out = model.token_embedding(out, reverse=True)
    return keras.ops.convert_to_numpy(out).astype(np.float64)[0]
