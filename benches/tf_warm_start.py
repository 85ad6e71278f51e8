#!/usr/bin/env python3
"""warmstart against TensorFlow's warm_start and a plain numpy script, on the same workloads.

Not run by CI. Needs tensorflow-cpu==2.21.0, numpy and safetensors, and a release build of
warmstart (`cargo build --release`). Run from the repository root:

    python benches/tf_warm_start.py [--dir /tmp/ws-tf] [--reps 3] [--workloads 1m64,2m128]

Workloads: a recommender table of N rows x D f32 columns (1M x 64 and 2M x 128), a vocabulary
of N tokens of which 90% are kept (shuffled) and 10% are new, 2 OOV buckets, truncated_normal
backup initializer. For each it times, medians of --reps:

- TensorFlow: tf.compat.v1.train.warm_start on a TF checkpoint of the table, then running the
  variable's initializer (which performs the remap) -- nothing is written to disk;
- numpy: read old safetensors, remap with a dict, initialise new rows, write the output
  safetensors (the "20-line script");
- warmstart: `warmstart run` file to file (output flushed to disk), --backend cpu.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "warmstart")
OOV = 2


def generate(d, rows, cols):
    os.makedirs(d, exist_ok=True)
    if os.path.exists(os.path.join(d, "plan.toml")):
        return
    rng = np.random.default_rng(7)
    old_tokens = ["tok%d" % i for i in range(rows)]
    kept = rng.permutation(rows)[: rows * 9 // 10]
    new_tokens = [old_tokens[i] for i in kept] + ["new%d" % i for i in range(rows - len(kept))]
    with open(os.path.join(d, "old_vocab.txt"), "w") as f:
        f.write("\n".join(old_tokens) + "\n")
    with open(os.path.join(d, "new_vocab.txt"), "w") as f:
        f.write("\n".join(new_tokens) + "\n")
    table = rng.standard_normal((rows, cols), dtype=np.float32)
    np.save(os.path.join(d, "old.npy"), table)
    save_file({"emb": table}, os.path.join(d, "old.safetensors"))
    save_file({"emb": np.zeros((rows + OOV, cols), np.float32)}, os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "plan.toml"), "w") as f:
        f.write(
            'checkpoint = "old.safetensors"\nmodel = "model.safetensors"\noutput = "out.safetensors"\n\n'
            "[vocab.emb]\nnew_vocab = \"new_vocab.txt\"\nnew_vocab_size = %d\nnum_oov_buckets = %d\n"
            'old_vocab = "old_vocab.txt"\n'
            'backup_initializer = { type = "truncated_normal", stddev = 0.01, seed = 42 }\n' % (rows, OOV)
        )


def time_tensorflow(d, rows, cols):
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    prefix = os.path.join(d, "tf_ckpt", "model")
    if not os.path.exists(prefix + ".index"):
        table = np.load(os.path.join(d, "old.npy"))
        g = tf.Graph()
        with g.as_default():
            v = tf.compat.v1.get_variable("emb", initializer=tf.constant(table))
            saver = tf.compat.v1.train.Saver()
            with tf.compat.v1.Session(graph=g) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                saver.save(sess, prefix)
    g = tf.Graph()
    with g.as_default():
        v = tf.compat.v1.get_variable("emb", shape=[rows + OOV, cols], initializer=tf.compat.v1.zeros_initializer())
        start = time.perf_counter()
        tf.compat.v1.train.warm_start(
            prefix,
            vars_to_warm_start=".*",
            var_name_to_vocab_info={
                "emb": tf.compat.v1.train.VocabInfo(
                    new_vocab=os.path.join(d, "new_vocab.txt"),
                    new_vocab_size=rows,
                    num_oov_buckets=OOV,
                    old_vocab=os.path.join(d, "old_vocab.txt"),
                    backup_initializer=tf.compat.v1.truncated_normal_initializer(stddev=0.01, seed=42),
                )
            },
        )
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(v.initializer)
        return time.perf_counter() - start


def time_numpy(d, rows, cols):
    start = time.perf_counter()
    old = load_file(os.path.join(d, "old.safetensors"))["emb"]
    with open(os.path.join(d, "old_vocab.txt")) as f:
        index = {t: i for i, t in enumerate(f.read().split("\n")[:-1])}
    with open(os.path.join(d, "new_vocab.txt")) as f:
        new = f.read().split("\n")[:-1]
    rng = np.random.default_rng(42)
    out = np.clip(rng.standard_normal((rows + OOV, cols), dtype=np.float32), -2, 2) * 0.01
    src = np.array([index.get(t, -1) for t in new])
    present = np.nonzero(src >= 0)[0]
    out[present] = old[src[present]]
    path = os.path.join(d, "numpy_out.safetensors")
    save_file({"emb": out}, path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - start
    os.remove(path)
    return elapsed


def time_warmstart(d):
    out = os.path.join(d, "out.safetensors")
    start = time.perf_counter()
    subprocess.run([BINARY, "run", "plan.toml", "--quiet", "--backend", "cpu"], cwd=d, check=True)
    elapsed = time.perf_counter() - start
    os.remove(out)
    return elapsed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", default="/tmp/warmstart-tf-bench")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--workloads", default="1m64,2m128")
    a = p.parse_args()
    if not os.path.exists(BINARY):
        sys.exit("build warmstart first: cargo build --release")
    shapes = {"1m64": (1 << 20, 64), "2m128": (2 << 20, 128)}
    print("| workload | TensorFlow s | numpy s | warmstart s | TF / warmstart | numpy / warmstart |")
    print("|---|---|---|---|---|---|")
    for name in a.workloads.split(","):
        rows, cols = shapes[name]
        d = os.path.join(a.dir, name)
        generate(d, rows, cols)
        tf_s, np_s, ws_s = [], [], []
        for _ in range(a.reps):
            tf_s.append(time_tensorflow(d, rows, cols))
            np_s.append(time_numpy(d, rows, cols))
            ws_s.append(time_warmstart(d))
        t, n, w = (statistics.median(x) for x in (tf_s, np_s, ws_s))
        print("| %d x %d f32 | %.2f | %.2f | %.2f | %.1fx | %.1fx |" % (rows, cols, t, n, w, t / w, n / w))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
