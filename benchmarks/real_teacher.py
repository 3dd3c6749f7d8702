"""GUIDE on a real pretrained teacher: SmolLM2-135M into a student a quarter its size.

Every variant trains the same student shape on the same training plays in the
same order, with the same budget and optimizer, and is scored on four whole
held-out plays it never saw (Hamlet, Julius Caesar, The Tempest, Twelfth
Night), at step 0 and every `--eval-every` steps. The calibration text of the
data-aware variants comes from the training plays only. Results are written
after every evaluation to `--out/results.json`; a rerun skips finished runs
and restarts unfinished ones, so a stopped study resumes.

Variants (pick with `--runs`):
- `random-0`, `random-1`: the student's own random initialization (seeds 0, 1).
- `selection`: uniform weight selection (Xu et al. 2023).
- `guide-first`: GUIDE as the paper describes it (table PCA, first block).
- `guide`: `keras_guide.guide()` with its defaults (table PCA, every block).
- `guide-calibrated`: data-aware GUIDE: the residual channels, heads,
  neurons and blocks that carry the most energy on the calibration text.
- `kd`: random init (seed 0) + knowledge distillation from the teacher's
  stored top-k logits; `guide-kd`, `guide-calibrated-kd`: GUIDE and KD.
- `guide-activations`, `guide-channels`, `guide-importance-units`,
  `guide-importance-map`: each data-aware option alone on top of the defaults;
  `guide-channels-units`, `guide-channels-map`, `guide-units-map`: two of them;
  `guide-pca`, `guide-pca-fold`: the token table's PCA where the defaults
  select coordinates (Gemma 2 and 3);
  `guide-calibrated-untied`: the activation basis with an untied student head
  (the final gain folded exactly; `V · d_S` more parameters).

Usage:
    KERAS_BACKEND=jax python benchmarks/real_teacher.py --out runs/real_teacher
    python benchmarks/real_teacher.py --table runs/real_teacher/results.json
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

CALIBRATED = dict(projection="channels", select="importance", layer_map="importance")
VARIANTS = {
    "random-0": dict(init="random", seed=0),
    "random-1": dict(init="random", seed=1),
    "selection": dict(init="selection"),
    "guide-first": dict(init="guide", options=dict(blocks="first")),
    "guide": dict(init="guide", options={}),
    "guide-calibrated": dict(init="guide", options=CALIBRATED),
    "kd": dict(init="random", seed=0, kd=True),
    "guide-kd": dict(init="guide", options={}, kd=True),
    "guide-calibrated-kd": dict(init="guide", options=CALIBRATED, kd=True),
    # Each data-aware option alone, on top of the defaults.
    "guide-activations": dict(init="guide", options=dict(projection="activations")),
    "guide-channels": dict(init="guide", options=dict(projection="channels")),
    "guide-importance-units": dict(init="guide", options=dict(select="importance")),
    "guide-importance-map": dict(init="guide", options=dict(layer_map="importance")),
    # The token table's PCA where `projection="auto"` selects (Gemma 2/3, BERT).
    "guide-pca": dict(init="guide", options=dict(projection="pca")),
    "guide-pca-fold": dict(init="guide", options=dict(projection="pca", norm="fold")),
    # Pairs, to see which options need each other.
    "guide-channels-units": dict(
        init="guide", options=dict(projection="channels", select="importance")
    ),
    "guide-channels-map": dict(
        init="guide", options=dict(projection="channels", layer_map="importance")
    ),
    "guide-units-map": dict(
        init="guide", options=dict(select="importance", layer_map="importance")
    ),
    "guide-calibrated-untied": dict(
        init="guide",
        tie=False,
        options=dict(CALIBRATED, projection="activations", norm="fold"),
    ),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--teacher", default="smollm2", help="smollm2, gemma3 or a .gguf path"
    )
    p.add_argument(
        "--runs",
        nargs="+",
        default=[
            "random-0",
            "random-1",
            "selection",
            "guide-first",
            "guide",
            "guide-calibrated",
            "kd",
            "guide-kd",
            "guide-calibrated-kd",
        ],
        choices=sorted(VARIANTS),
    )
    p.add_argument("--hidden-dim", type=int, default=384)
    p.add_argument("--num-layers", type=int, default=16)
    p.add_argument("--num-heads", type=int, default=6)
    p.add_argument("--num-key-value-heads", type=int, default=2)
    p.add_argument("--intermediate-dim", type=int, default=1024)
    p.add_argument(
        "--steps",
        type=int,
        default=200,
        help="training steps (0: only the loss at step 0)",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--sequence-length", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-windows", type=int, default=48)
    p.add_argument(
        "--eval-batch",
        type=int,
        default=8,
        help="windows per evaluation call (lower for a large vocabulary)",
    )
    p.add_argument("--calibration-windows", type=int, default=16)
    p.add_argument("--top-k", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--out", default="runs/real_teacher")
    return p.parse_args(argv)


class Study:
    """The teacher, the data, and the shared pieces every run uses."""

    def __init__(self, args):
        import keras

        from keras_guide.checkpoints import path as model_path
        from keras_guide.demo import data
        from keras_guide.gguf import load_gguf

        self.args = args
        start = time.perf_counter()
        self.teacher = load_gguf(model_path(args.teacher))
        self.teacher.trainable = False
        self.import_seconds = time.perf_counter() - start
        tokenizer = self.teacher.preprocessor.tokenizer
        # A tokenizer that starts every sequence (Gemma's <bos>) starts every
        # window: Gemma 3 scores text without it nats worse.
        head = (
            [tokenizer.start_token_id]
            if self.teacher.preprocessor.add_start_token
            else []
        )
        # The runs feed token ids: no model here applies its preprocessor.
        self.teacher.preprocessor = None
        names = data.split_names()
        width = args.sequence_length + 1 - len(head)

        def windows(split, step):
            ids = [
                np.asarray(keras.ops.convert_to_numpy(tokenizer(t)), np.int32)
                for t in data.load_texts(names[split])
            ]
            return np.stack(
                [
                    np.r_[head, d[i : i + width]].astype(np.int32)
                    for d in ids
                    for i in range(0, len(d) - width + 1, step)
                ]
            )

        train = windows("train", args.sequence_length)
        rng = np.random.default_rng(0)
        self.train = train[rng.permutation(len(train))]
        needed = args.steps * args.batch_size
        if needed > len(self.train):
            raise SystemExit(
                f"--steps x --batch-size = {needed} windows; the training plays "
                f"hold {len(self.train)}"
            )
        # Calibration: training windows the runs never train on.
        self.calibration = self.train[-args.calibration_windows :, :-1]
        self.train = self.train[:needed]
        test = windows("test", args.sequence_length)
        keep = np.round(np.linspace(0, len(test) - 1, args.eval_windows)).astype(int)
        self.test = test[keep]
        self.tokens = dict(
            train=int(self.train[:, 1:].size),
            test=int(self.test[:, 1:].size),
            calibration=int(self.calibration.size),
        )
        self.teacher_loss = self.evaluate(self.teacher)
        self._offline = None

    @staticmethod
    def inputs(windows):
        ids = windows[:, :-1].astype("int32")
        return {"token_ids": ids, "padding_mask": np.ones_like(ids)}

    def evaluate(self, model, batch=None):
        """Mean held-out token cross-entropy (nats), float64 on the host."""
        import keras

        total = 0.0
        batch = batch or self.args.eval_batch
        for i in range(0, len(self.test), batch):
            w = self.test[i : i + batch]
            z = keras.ops.convert_to_numpy(model(self.inputs(w))).astype(np.float64)
            z -= z.max(-1, keepdims=True)
            log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
            total -= np.take_along_axis(log_p, w[:, 1:, None], -1).sum()
        return float(total / self.test[:, 1:].size)

    def offline(self):
        """The teacher's top-k logits on the training windows, computed once."""
        from keras_guide.distillation import teacher_top_k

        if self._offline is None:
            start = time.perf_counter()
            targets = teacher_top_k(
                self.teacher,
                self.inputs(self.train),
                self.args.top_k,
                batch_size=self.args.batch_size,
                temperature=self.args.temperature,
            )
            self._offline = (targets, time.perf_counter() - start)
        return self._offline


def build(study, variant):
    """The student of a variant, initialized; returns `(student, seconds, report)`."""
    import keras

    from keras_guide import build_student
    from keras_guide import guide
    from keras_guide import weight_selection

    a = study.args
    keras.utils.set_random_seed(variant.get("seed", 0))
    student = build_student(
        study.teacher,
        tie_embeddings=variant.get("tie"),
        hidden_dim=a.hidden_dim,
        num_layers=a.num_layers,
        num_heads=a.num_heads,
        num_key_value_heads=a.num_key_value_heads,
        intermediate_dim=a.intermediate_dim,
    )
    student.preprocessor = None
    start = time.perf_counter()
    report = None
    if variant["init"] == "selection":
        report = weight_selection(study.teacher, student)
    elif variant["init"] == "guide":
        options = dict(variant["options"])
        if any(
            v in ("channels", "activations", "importance") for v in options.values()
        ):
            options["calibration"] = study.calibration
        report = guide(study.teacher, student, **options)
    return student, time.perf_counter() - start, report


def schedule(args):
    import keras

    return keras.optimizers.schedules.CosineDecay(
        0.0,
        max(1, args.steps - args.warmup),
        alpha=0.1,
        warmup_target=args.learning_rate,
        warmup_steps=min(args.warmup, args.steps),
    )


def train(study, variant, student, record, save):
    """Trains for `--steps`, evaluating every `--eval-every`; returns seconds."""
    import keras

    from keras_guide.distillation import Distiller
    from keras_guide.distillation import LogitsDistillation

    a = study.args
    optimizer = keras.optimizers.AdamW(schedule(a), weight_decay=0.01, clipnorm=1.0)
    x_all = study.inputs(study.train)
    y_all = study.train[:, 1:].astype("int32")
    if variant.get("kd"):
        targets, _ = study.offline()
        # The temperature the top-k cache was stored at (its log-normalizer
        # applies only there; the Distiller's default, 2, silently dropped the
        # teacher's tail before 2026-12-02).
        model = Distiller(
            study.teacher,
            student,
            LogitsDistillation(temperature=a.temperature),
            student_loss_weight=0.5,
        )
        model.compile(optimizer=optimizer)
    else:
        model = student
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    seconds = 0.0
    for start in range(0, a.steps, a.eval_every):
        rows = slice(
            start * a.batch_size, min(a.steps, start + a.eval_every) * a.batch_size
        )
        x = {k: v[rows] for k, v in x_all.items()}
        y = y_all[rows]
        if variant.get("kd"):
            y = {"labels": y, **{k: v[rows] for k, v in targets.items()}}
        begin = time.perf_counter()
        model.fit(x, y, batch_size=a.batch_size, epochs=1, shuffle=False, verbose=0)
        seconds += time.perf_counter() - begin
        step = min(a.steps, start + a.eval_every)
        record["losses"][str(step)] = study.evaluate(student)
        record["train_seconds"] = seconds
        save()
        print(
            f"  step {step}: held-out {record['losses'][str(step)]:.3f} "
            f"({seconds:.0f} s)",
            flush=True,
        )
    return seconds


def table(path):
    """A Markdown table of a results file: loss at each evaluated step, and at
    the last one perplexity and the gap closed against the mean of the
    random-init runs (`(L_random - L) / (L_random - L_teacher)`)."""
    results = json.load(open(path))
    runs, teacher = results["runs"], results["teacher_loss"]
    steps = sorted({int(s) for r in runs.values() for s in r["losses"]})
    last = str(steps[-1])
    randoms = [
        r["losses"][last]
        for k, r in runs.items()
        if k.startswith("random-") and last in r["losses"]
    ]
    base = float(np.mean(randoms)) if randoms else None
    head = ["run"] + [f"step {s}" for s in steps]
    if len(steps) > 1:
        head += ["perplexity", "gap closed", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in runs.items():
        cells = [name] + [
            f"{r['losses'][str(s)]:.3f}" if str(s) in r["losses"] else "" for s in steps
        ]
        if len(steps) > 1:
            loss = r["losses"].get(last)
            done = loss is not None
            gap = (base - loss) / (base - teacher) if done and base else None
            cells += [
                f"{np.exp(loss):.1f}" if done else "",
                f"{100 * gap:.1f} %" if gap is not None else "",
                f"{r.get('train_seconds', 0):.0f}" if done else "",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"| teacher | {teacher:.3f} |" + " |" * (len(head) - 2))
    return "\n".join(lines)


def main(argv=None):
    if argv is None and sys.argv[1:2] == ["--table"]:
        print(table(sys.argv[2]))
        return
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "results.json")
    results = json.load(open(path)) if os.path.exists(path) else {"runs": {}}
    settings = vars(args)
    previous = results.get("settings")
    if previous is not None:
        # Runs of one results file must be comparable: only the list differs.
        changed = sorted(
            k
            for k in set(previous) | set(settings)
            if k != "runs" and previous.get(k) != settings.get(k)
        )
        if changed:
            raise SystemExit(
                f"{path} holds runs with other settings ({', '.join(changed)}); "
                "use another --out"
            )
        settings["runs"] = list(dict.fromkeys(previous["runs"] + args.runs))
    study = Study(args)
    results.update(
        teacher=args.teacher,
        teacher_loss=study.teacher_loss,
        tokens=study.tokens,
        import_seconds=study.import_seconds,
        settings=settings,
    )

    def save():
        with open(path + ".tmp", "w") as f:
            json.dump(results, f, indent=1)
        os.replace(path + ".tmp", path)

    print(
        f"teacher held-out loss {study.teacher_loss:.3f}; tokens {study.tokens}",
        flush=True,
    )
    for name in args.runs:
        done = results["runs"].get(name, {})
        if str(args.steps) in done.get("losses", {}):
            print(f"{name}: done", flush=True)
            continue
        variant = VARIANTS[name]
        student, init_seconds, report = build(study, variant)
        record = results["runs"][name] = dict(
            losses={"0": study.evaluate(student)},
            init_seconds=init_seconds,
            parameters=int(student.backbone.count_params()),
            calibration=None if report is None else report.calibration,
            layer_map=None if report is None else report.layer_map,
        )
        if variant.get("kd") and args.steps:
            record["teacher_pass_seconds"] = study.offline()[1]
        print(
            f"{name}: step 0 held-out {record['losses']['0']:.3f} "
            f"(init {init_seconds:.0f} s)",
            flush=True,
        )
        save()
        if args.steps:
            train(study, variant, student, record, save)
    save()


if __name__ == "__main__":
    main()
