import keras
import numpy as np
import pytest

from keras_guide.evaluation import heldout_cross_entropy
from keras_guide.workflows import text


def test_strip_gutenberg_removes_header_licence_and_end():
    raw = (
        "The Project Gutenberg EBook of Hamlet\r\nLicence blah\r\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r\n\r\n\r\n\r\n"
        "HAMLET   \r\nTo be.\r\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r\nmore licence\r\n"
    )
    assert text.strip_gutenberg(raw) == "HAMLET\nTo be.\n"


def test_windows_cover_every_target_once_and_mask_padding():
    docs = [np.arange(1, 12, dtype=np.int32), np.arange(20, 25, dtype=np.int32)]
    tokens, mask = text.make_windows(docs, sequence_length=4, pad_id=0)
    assert tokens.shape == mask.shape == (4, 5)
    x, y, weight = text.window_batch(tokens, mask)
    targets = y[weight > 0]
    np.testing.assert_array_equal(np.sort(targets), np.r_[2:12, 21:25])
    np.testing.assert_array_equal(x["token_ids"], tokens[:, :-1])
    np.testing.assert_array_equal(y, tokens[:, 1:])
    np.testing.assert_array_equal(x["padding_mask"], mask[:, :-1] > 0)
    assert weight.dtype == np.float32
    # A padded position is never a target.
    assert np.all(y[weight == 0] == 0)


def test_windows_open_with_the_start_token_and_still_cover_every_target_once():
    # Gemma's tokenizer starts every sequence with <bos>: each window does too.
    class Encoder:
        start_token_id, end_token_id = 99, 98

        def encode(self, text):
            return [int(c) for c in text]

    docs = text.tokenize_documents(["1234567", "12"], Encoder())
    np.testing.assert_array_equal(docs[0], [1, 2, 3, 4, 5, 6, 7, 98])
    tokens, mask = text.make_windows(docs, sequence_length=3, pad_id=0, start_id=99)
    np.testing.assert_array_equal(
        tokens,
        [[99, 1, 2, 3], [99, 4, 5, 6], [99, 7, 98, 0], [99, 1, 2, 98]],
    )
    _, y, weight = text.window_batch(tokens, mask)
    targets = y[weight > 0]
    np.testing.assert_array_equal(np.sort(targets), np.sort(np.concatenate(docs)))


def test_a_hub_encoder_starts_windows_only_if_its_preprocessor_adds_the_token():
    class Tokenizer:
        start_token_id, end_token_id = 2, 1

        def vocabulary_size(self):
            return 10

    assert text.HubEncoder(Tokenizer(), add_start_token=True).start_token_id == 2
    assert text.HubEncoder(Tokenizer()).start_token_id is None


def test_batches_are_a_function_of_seed_and_step():
    tokens = np.arange(50 * 5, dtype=np.int32).reshape(50, 5)
    mask = np.ones_like(tokens)
    a = text.Batches(tokens, mask, batch_size=8, seed=3)
    b = text.Batches(tokens, mask, batch_size=8, seed=3)
    c = text.Batches(tokens, mask, batch_size=8, seed=4)
    late = [b.batch(s)[1] for s in (11, 2)]
    for step in range(14):
        x, y, w = a.batch(step)
        assert x["token_ids"].shape == (8, 4)
    np.testing.assert_array_equal(a.batch(11)[1], late[0])
    np.testing.assert_array_equal(a.batch(2)[1], late[1])
    assert not np.array_equal(a.batch(0)[1], c.batch(0)[1])
    # One epoch (6 batches of 8 out of 50) has no repeated window.
    firsts = np.concatenate([a.batch(s)[0]["token_ids"][:, 0] for s in range(6)])
    assert len(set(firsts.tolist())) == 48


class TableLM(keras.Model):
    """Logits are a fixed table row per input token (an exactly known model)."""

    def __init__(self, table):
        super().__init__(name="table_lm")
        self.embed = keras.layers.Embedding(*table.shape)
        self.embed.build((None,))
        self.embed.embeddings.assign(table)

    def call(self, inputs):
        return self.embed(inputs["token_ids"])


def test_held_out_loss_of_windows_equals_an_independent_numpy_computation():
    rng = np.random.default_rng(0)
    table = (rng.normal(size=(11, 11)) * 3).astype("float32")
    model = TableLM(table)
    docs = [rng.integers(0, 11, size=n).astype(np.int32) for n in (9, 4, 13)]
    tokens, mask = text.make_windows(docs, sequence_length=5, pad_id=0)
    batches = text.eval_batches(tokens, mask, batch_size=2)
    got = heldout_cross_entropy(model, batches)
    total, count = 0.0, 0
    for doc in docs:
        for current, following in zip(doc[:-1], doc[1:]):
            row = table[current].astype(np.float64)
            probs = np.exp(row) / np.exp(row).sum()
            total += -np.log(probs[following])
            count += 1
    assert count == int(mask[:, 1:].sum())
    np.testing.assert_allclose(got, total / count, rtol=1e-6)


def test_eval_subset_is_evenly_spaced_and_fixed():
    tokens = np.arange(100 * 3, dtype=np.int32).reshape(100, 3)
    mask = np.ones_like(tokens)
    a = text.eval_batches(tokens, mask, batch_size=4, max_windows=10)
    b = text.eval_batches(tokens, mask, batch_size=4, max_windows=10)
    firsts = np.concatenate([x["token_ids"][:, 0] for x, _, _ in a])
    np.testing.assert_array_equal(firsts // 3, np.round(np.linspace(0, 99, 10)))
    again = np.concatenate([x["token_ids"][:, 0] for x, _, _ in b])
    np.testing.assert_array_equal(firsts, again)


def test_held_out_loss_refuses_fully_masked_batches():
    model = TableLM(np.zeros((3, 3), "float32"))
    x = {
        "token_ids": np.zeros((1, 2), np.int32),
        "padding_mask": np.zeros((1, 2), bool),
    }
    batch = (x, np.zeros((1, 2), np.int32), np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="no token"):
        heldout_cross_entropy(model, [batch])
