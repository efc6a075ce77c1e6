"""The origin on a GPU host: ONNX Runtime's CUDA provider beside its CPU provider, same run.

For each model directory, the release `origin` serves `full.onnx` with
`--backend ort-cuda` (micro-batches up to 256 requests, waiting at most
500 µs for a batch to fill: a GPU's cost per run barely grows with the batch)
and with `--backend ort-cpu` (the defaults: batches up to 32, no wait), both
from the same `libonnxruntime.so` of the `onnxruntime-gpu` wheel. The bounded
`loadgen` drives each at concurrency 1 and 64 with the directory's 100 real
test histories (`parity.json`); the table gives p50/p99 ms and requests/s.

Usage: python bench/gpu_origin.py ORT_GPU_LIB TARGET_DIR [--backends ort-cuda,ort-cpu] MODEL_DIR...
(`--backends ort-cpu` runs the script on a machine without a GPU, to check it.)
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from origin_bench import histories, run_origin  # noqa: E402

SETTINGS = {
    "ort-cuda": ["--max-batch", "256", "--max-queue-delay-us", "500", "--inference-workers", "2"],
    "ort-cpu": [],
}


def main():
    args = sys.argv[1:]
    backends = ["ort-cuda", "ort-cpu"]
    if "--backends" in args:
        i = args.index("--backends")
        backends = args[i + 1].split(",")
        del args[i : i + 2]
    ort_lib, target, *model_dirs = args
    print("| model | backend | concurrency | p50 ms | p99 ms | requests/s | errors |")
    print("|---|---|---|---|---|---|---|")
    for model_dir in model_dirs:
        hist_file = os.path.join(target, "gpu-bench-histories.json")
        json.dump(histories(model_dir), open(hist_file, "w"))
        arch = json.load(open(os.path.join(model_dir, "manifest.json")))["models"]["full"]["params"].get("architecture", "ease")
        for backend in backends:
            for r in run_origin(target, model_dir, ort_lib, backend, hist_file, SETTINGS[backend], (1, 64)):
                print(
                    f"| {os.path.basename(model_dir)} ({arch}) | {backend} | {r['concurrency']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['rps']:.0f} | {r['errors']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
