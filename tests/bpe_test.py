import collections

import numpy as np
import pytest

from keras_guide import bpe
from keras_guide.demo import data
from keras_guide.demo import tokenizer


def _sample():
    return data.load_texts(["hamlet"])[0][:4000]


def test_train_bpe_merges_most_frequent_pair_first_and_is_deterministic():
    counts = collections.Counter({"Ġthe": 50, "Ġto": 20, "Ġcat": 3})
    vocab, merges = bpe.train_bpe(counts, 262)
    assert merges[0] == "Ġ t"  # 70 occurrences
    assert merges[1] == "h e"  # ties with "Ġt h" (50): the smaller pair wins
    assert merges[2] == "Ġt he"
    assert len(vocab) == 262 and vocab[bpe.END_OF_TEXT] == 261
    assert sorted(vocab.values()) == list(range(262))
    assert bpe.train_bpe(counts, 262) == (vocab, merges)


def test_train_bpe_rejects_a_vocabulary_without_room_for_the_bytes():
    with pytest.raises(ValueError, match="vocabulary_size=100"):
        bpe.train_bpe(collections.Counter({"a": 1}), 100)


def test_trained_encoder_round_trips_and_compresses(tmp_path):
    text = "To be, or not to be: that is the question.\n" * 20 + "naïve café ☃\n"
    vocab, merges = bpe.train_bpe(bpe.word_counts([text]), 300)
    bpe.save_bpe(vocab, merges, tmp_path)
    encoder = bpe.load_encoder(tmp_path)
    ids = encoder.encode(text)
    assert encoder.decode(ids) == text
    assert len(ids) < len(text.encode("utf-8"))


def test_shipped_tokenizer_round_trips_held_out_text():
    encoder = tokenizer.load_encoder()
    assert encoder.vocabulary_size == 2048
    assert encoder.end_token_id == 2047
    text = _sample()
    ids = encoder.encode(text)
    assert max(ids) < 2047
    assert encoder.decode(ids) == text
    assert len(text) / len(ids) > 2.0


def test_keras_hub_gpt2_tokenizer_round_trips_with_the_shipped_assets():
    hub = tokenizer.keras_hub_tokenizer()
    text = _sample()
    ids = np.asarray(hub(text))
    assert hub.vocabulary_size() == 2048
    assert hub.detokenize(ids) == text
    ours = tokenizer.load_encoder().encode(text)
    # KerasHub's pure-Python path pre-splits differently around some
    # contractions ("usurp'st"); ids agree almost everywhere.
    assert len(ids) == len(ours)
    assert np.mean(ids == np.asarray(ours)) > 0.99


def test_encoder_matches_keras_hub_tensorflow_path_exactly():
    pytest.importorskip(
        "tensorflow_text", reason="KerasHub's TF path needs tensorflow-text"
    )
    import keras_hub

    vocab, merges = tokenizer.load_bpe()
    hub = keras_hub.models.GPT2Tokenizer(
        vocabulary=vocab, merges=merges, _allow_python_workflow=False
    )
    text = _sample()
    assert [int(i) for i in hub(text)] == tokenizer.load_encoder().encode(text)
