import glob
import os

from keras_guide.demo import data


def test_split_is_fixed_and_disjoint():
    split = data.split_names()
    assert split["test"] == ["hamlet", "julius_caesar", "tempest", "twelfth_night"]
    assert split["validation"] == ["macbeth"]
    train = set(split["train"])
    assert not train & set(split["test"]) and not train & set(split["validation"])
    assert len(train) + 5 == len(data.play_names()) == 42


def test_folio_texts_are_never_read():
    folio = glob.glob(os.path.join(data.plays_dir(), "*_gut_f.txt"))
    assert folio
    names = set(data.play_names())
    assert not any(os.path.basename(f)[: -len("_gut.txt")] in names for f in folio)
    assert all(not n.endswith("_f") for n in names)


def test_held_out_text_does_not_occur_in_training_text():
    train = "\n".join(data.load_texts(data.split_names()["train"]))
    for text in data.load_texts(data.TEST_PLAYS):
        lines = [line for line in text.split("\n") if len(line) > 45]
        probe = lines[len(lines) // 2 : len(lines) // 2 + 20]
        assert sum(line in train for line in probe) <= 2


def test_demo_data_windows_and_token_counts():
    demo = data.DemoData(sequence_length=64)
    tokens, mask = demo.windows["test"]
    assert tokens.shape[1] == 65
    assert tokens.max() < 2048
    assert int(mask[:, 1:].sum()) == demo.num_tokens["test"]
    assert demo.num_tokens["train"] > 10 * demo.num_tokens["test"] / 2
