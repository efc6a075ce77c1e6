"""Checks that onnxruntime agrees with the trainer on every exported model.

For each `models/<dataset>/` it runs `full.onnx` and `edge.onnx` in
onnxruntime (CPU) on the histories of `parity.json` and compares the top-20
indices and scores with the trainer's own computation: max |Δscore| within
the per-model tolerance that parity.json records (1e-4; absolute for |score|
≤ 1, relative above, as the trainer checks tract — it explains why), same
ordering except ties within that tolerance. Histories are ordered, oldest first, and
left-padded (shared::contract). Exits non-zero on any disagreement.

Usage: python bench/ort_parity.py models/movielens [models/instacart ...]
"""

import json
import os
import sys

import numpy as np
import onnxruntime as ort

TOL = 1e-4


def check(model_dir):
    manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
    catalog = json.load(open(os.path.join(model_dir, "catalog.json")))["items"]
    index = {item["id"]: i for i, item in enumerate(catalog)}
    parity = json.load(open(os.path.join(model_dir, "parity.json")))
    cases = parity["cases"]
    ok = True
    for kind, entry in sorted(manifest["models"].items()):
        tol = parity.get("tolerance", {}).get(kind, TOL)
        n = entry["n_items"]
        session = ort.InferenceSession(os.path.join(model_dir, entry["file"]), providers=["CPUExecutionProvider"])
        rows = [[index[h] for h in c["history"] if h in index and index[h] < n] for c in cases]
        width = max(1, max(len(r) for r in rows))
        history = np.full((len(rows), width), n, dtype=np.int64)  # padding index = n_items
        weights = np.zeros((len(rows), width), dtype=np.float32)
        for b, r in enumerate(rows):
            history[b, width - len(r) :] = r  # left-padded: the newest item is last
            weights[b, width - len(r) :] = 1.0
        scores, indices = session.run(["scores", "indices"], {"history": history, "weights": weights})
        max_diff = 0.0

        def close(got, want):
            return abs(got - want) <= tol * max(1.0, abs(want))

        for b, case in enumerate(cases):
            want_i, want_s = case["expected"][kind], np.array(case["scores"][kind])
            got_s = scores[b, : len(want_i)]
            diff = float(np.max(np.abs(got_s - want_s)))
            max_diff = max(max_diff, diff)
            for pos, (gi, wi) in enumerate(zip(indices[b], want_i)):
                if gi != wi and not any(close(s, want_s[pos]) for i, s in zip(want_i, want_s) if i == gi):
                    if pos != len(want_i) - 1:
                        print(f"FAIL {model_dir} {kind} user {case['user']}: rank {pos} item {gi} vs trainer {wi}")
                        ok = False
            if not all(close(g, w) for g, w in zip(got_s, want_s)):
                print(f"FAIL {model_dir} {kind} user {case['user']}: max |Δscore| {diff:.2e}")
                ok = False
        print(f"onnxruntime {ort.__version__} {model_dir}/{entry['file']}: {len(cases)} users, max |Δscore| = {max_diff:.2e} (≤ {tol} × max(1, |score|))")
    return ok


def main():
    results = [check(d) for d in sys.argv[1:]]
    if not all(results):
        sys.exit(1)
    print(f"onnxruntime parity: all {len(sys.argv) - 1} model directories agree with the trainer")


if __name__ == "__main__":
    main()
