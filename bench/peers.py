"""Peer benchmark: the `implicit` library's ALS and BPR on edgerec's exact splits.

Reads the splits the trainer wrote (`trainer train --splits DIR`), trains each
peer over a small grid on the validation split and again on the test split's
training part, and writes every run's top-20 rankings to `peers.json`.
Metrics are NOT computed here: `trainer eval-peers` scores these rankings with
the same Rust code that scores our models, and picks each peer's setting by
validation NDCG@20.

Usage: python bench/peers.py SPLITS_DIR OUT_JSON
"""

import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit's own advice

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from implicit.als import AlternatingLeastSquares  # noqa: E402
from implicit.bpr import BayesianPersonalizedRanking  # noqa: E402

K = 20
GRID = [
    ("ALS", AlternatingLeastSquares, {"factors": f, "regularization": r, "iterations": 15, "alpha": a})
    for f in (32, 64, 128)
    for r in (0.01, 0.1)
    for a in (1.0, 10.0)
] + [
    ("BPR", BayesianPersonalizedRanking, {"factors": f, "learning_rate": lr, "regularization": 0.01, "iterations": 100})
    for f in (32, 64, 128)
    for lr in (0.01, 0.05)
]


def load_train(path):
    users, items, weights = [], [], []
    with open(path) as f:
        for line in f:
            u, i, w = line.rstrip("\n").split("\t")
            users.append(u)
            items.append(i)
            weights.append(float(w))
    user_ids = {u: n for n, u in enumerate(dict.fromkeys(users))}
    item_ids = {i: n for n, i in enumerate(dict.fromkeys(items))}
    m = sp.csr_matrix(
        (np.array(weights, dtype=np.float32), ([user_ids[u] for u in users], [item_ids[i] for i in items])),
        shape=(len(user_ids), len(item_ids)),
    )
    m.sum_duplicates()
    return m, user_ids, list(item_ids)


def rankings(split_dir, phase, cls, params, exclude_seen):
    matrix, user_ids, item_names = load_train(os.path.join(split_dir, f"{phase}_train.tsv"))
    with open(os.path.join(split_dir, f"{phase}_users.txt")) as f:
        users = [u for u in f.read().split("\n") if u and u in user_ids]
    model = cls(random_state=42, **params)
    started = time.perf_counter()
    model.fit(matrix, show_progress=False)
    fit_seconds = time.perf_counter() - started
    rows = np.array([user_ids[u] for u in users])
    ids, _ = model.recommend(rows, matrix[rows], N=K, filter_already_liked_items=exclude_seen)
    return {u: [item_names[i] for i in row if i >= 0] for u, row in zip(users, ids)}, fit_seconds


def main():
    split_dir, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(split_dir, "meta.json")) as f:
        exclude_seen = json.load(f)["exclude_seen"]
    runs = []
    for name, cls, params in GRID:
        val, _ = rankings(split_dir, "val", cls, params, exclude_seen)
        test, fit_seconds = rankings(split_dir, "test", cls, params, exclude_seen)
        runs.append({"model": name, "params": params, "fit_seconds": fit_seconds, "val": val, "test": test})
        print(f"  {name} {params}: fit {fit_seconds:.2f} s", file=sys.stderr)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump({"runs": runs}, f)


if __name__ == "__main__":
    main()
