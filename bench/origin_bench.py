"""Origin benchmark: raw ONNX Runtime vs the origin over HTTP, same model, same run.

Raw: Python onnxruntime runs the model's `full.onnx` directly (one session,
one intra-op thread — the origin's per-session setting), single-row calls from
1, 8 and 64 threads. Origin: the release `origin` binary with the ort-cpu and
tract backends, loaded by the bounded `loadgen` (tests/src/bin/loadgen.rs, on tests/src/load.rs) at concurrency 1, 8
and 64 with the same 100 real test histories (`parity.json`). Also ort-cpu at
64 with micro-batching off (`--max-batch 1`) to measure what batching buys.
RSS is the origin's peak resident set (VmHWM) after each run.

Usage: python bench/origin_bench.py MODEL_DIR ORT_LIB TARGET_DIR OUT_MD
"""

import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import onnxruntime as ort

CONCURRENCY = (1, 8, 64)

# Kept in the generated document until a GPU run replaces it with figures.
GPU_SECTION = """
## The full model on a GPU (ONNX Runtime CUDA)

**Not measured: no GPU machine was lent to this work.** The session's `device`
tool reported `can_start_another: false` on 2026-11-24 (this task draws no
device), so the CUDA path is built and wired but has not run. What is ready:

- The origin registers ONNX Runtime's CUDA execution provider with
  `--backend ort-cuda` (`error_on_failure`: a missing provider library is an
  error, not a silent CPU run) or tries it first with `--backend auto`.
- `bench/gpu_origin.py` is the benchmark the issue asks for: per model
  directory, the origin on `ort-cuda` (micro-batches up to 256 requests,
  500 µs queue delay, 2 sessions) beside `ort-cpu` from the same library, at
  concurrency 1 and 64, p50/p99 ms and requests/s, on the 100 real test
  histories:

  ```sh
  cargo build --release -p origin --bins -p e2e --bin loadgen
  python bench/gpu_origin.py "$ORT_GPU_LIB" target models/movielens models/instacart
  ```

  `ORT_GPU_LIB` is `libonnxruntime.so.*` from the `onnxruntime-gpu` wheel's
  `capi/` directory, with `libonnxruntime_providers_cuda.so` beside it.
  (`--backends ort-cpu` runs the same script on a machine without a GPU; done
  here to check the script.)
- Getting the provider onto the lent machine (from the issue, not yet tried):
  the device image has CUDA 13 and a CPU-only `onnxruntime`, cannot download,
  and takes at most 64 MiB per call, while the CUDA provider library alone is
  284 MB. The plan: `pip download onnxruntime-gpu` here, unpack the wheel,
  `split -b 60M` the `capi/` libraries, carry one part per call to a machine
  kept warm (it keeps its files between calls), `cat` them back together and
  check their sha256 there before the first run.
"""
REQUESTS = {1: 2000, 8: 6000, 64: 12000}


def histories(model_dir):
    cases = json.load(open(os.path.join(model_dir, "parity.json")))["cases"]
    return [c["history"] for c in cases]


def raw_ort(model_dir, hist):
    catalog = json.load(open(os.path.join(model_dir, "catalog.json")))["items"]
    index = {item["id"]: i for i, item in enumerate(catalog)}
    manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
    n = manifest["models"]["full"]["n_items"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(os.path.join(model_dir, "full.onnx"), opts, providers=["CPUExecutionProvider"])
    feeds = []
    for h in hist:
        idx = [index[i] for i in h if i in index and index[i] < n]
        feeds.append({"history": np.array([idx], dtype=np.int64), "weights": np.ones((1, len(idx)), dtype=np.float32)})
    rows = []
    for c in CONCURRENCY:
        total = REQUESTS[c]
        latencies = []
        lock = threading.Lock()
        counter = [0]

        def worker():
            local = []
            while True:
                with lock:
                    i = counter[0]
                    counter[0] += 1
                if i >= total:
                    break
                t = time.perf_counter()
                session.run(["scores", "indices"], feeds[i % len(feeds)])
                local.append((time.perf_counter() - t) * 1e3)
            with lock:
                latencies.extend(local)

        threads = [threading.Thread(target=worker) for _ in range(c)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        latencies.sort()
        rows.append({"concurrency": c, "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99), "mean_ms": statistics.fmean(latencies), "rps": len(latencies) / wall, "ok": len(latencies), "errors": 0})
    return rows


def pct(sorted_values, p):
    k = max(1, min(len(sorted_values), int(np.ceil(len(sorted_values) * p))))
    return sorted_values[k - 1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


BENCH_ADMIN_TOKEN = "bench-admin-token"


def server_totals(port):
    """(model-run seconds, model runs, in-server request seconds, requests) so far, from /metrics."""
    # /metrics is for operators: the origin runs with BENCH_ADMIN_TOKEN.
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {BENCH_ADMIN_TOKEN}"})
    text = urllib.request.urlopen(req).read().decode()
    values = {}
    for line in text.splitlines():
        for key in ("inference_duration_seconds_sum", "inference_duration_seconds_count"):
            if line.startswith(key + "{"):
                values[key] = float(line.split()[-1])
        if line.startswith('http_request_duration_seconds_sum{route="/v1/recommendations"'):
            values["http_sum"] = values.get("http_sum", 0) + float(line.split()[-1])
        if line.startswith('http_request_duration_seconds_count{route="/v1/recommendations"'):
            values["http_count"] = values.get("http_count", 0) + float(line.split()[-1])
    return (values["inference_duration_seconds_sum"], values["inference_duration_seconds_count"], values["http_sum"], values["http_count"])


def run_origin(target, model_dir, ort_lib, backend, hist_file, extra=(), concurrency=CONCURRENCY):
    port = free_port()
    cmd = [os.path.join(target, "release/origin"), "serve", "--models", model_dir, "--addr", f"127.0.0.1:{port}", "--backend", backend, "--ort-lib", ort_lib, "--admin-token", BENCH_ADMIN_TOKEN, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"origin ({backend}) did not become ready")
            time.sleep(0.05)
        rows = []
        url = f"http://127.0.0.1:{port}/v1/recommendations"
        loadgen = os.path.join(target, "release/loadgen")
        subprocess.run([loadgen, url, hist_file, "8", "500"], check=True, capture_output=True)  # warm connections and caches
        for c in concurrency:
            before = server_totals(port)
            out = subprocess.run([loadgen, url, hist_file, str(c), str(REQUESTS[c])], check=True, capture_output=True, text=True).stdout
            row = json.loads(out)
            row["rss_mb"] = rss_mb(proc.pid)
            after = server_totals(port)
            d = [a - b for a, b in zip(after, before)]
            row["model_ms"], row["server_ms"] = 1e3 * d[0] / d[1], 1e3 * d[2] / d[3]
            rows.append(row)
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    model_dir, ort_lib, target, out_md = sys.argv[1:5]
    hist = histories(model_dir)
    hist_file = os.path.join(target, "bench-histories.json")
    json.dump(hist, open(hist_file, "w"))
    results = {"raw onnxruntime (Python, in-process)": raw_ort(model_dir, hist)}
    results["origin HTTP, ort-cpu"] = run_origin(target, model_dir, ort_lib, "ort-cpu", hist_file)
    results["origin HTTP, tract"] = run_origin(target, model_dir, ort_lib, "tract", hist_file)
    results["origin HTTP, ort-cpu, batching off"] = run_origin(target, model_dir, ort_lib, "ort-cpu", hist_file, ["--max-batch", "1"], (64,))
    raw = {r["concurrency"]: r for r in results["raw onnxruntime (Python, in-process)"]}
    lines = [
        "| setup | concurrency | p50 ms | p99 ms | requests/s | p50 vs raw ORT | origin RSS MB | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        for r in rows:
            ratio = r["p50_ms"] / raw[r["concurrency"]]["p50_ms"]
            rss = f"{r['rss_mb']:.0f}" if "rss_mb" in r else "-"
            lines.append(f"| {name} | {r['concurrency']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['rps']:.0f} | {ratio:.2f}× | {rss} | {r['errors']} |")
    table = "\n".join(lines)
    print(table)
    on = {r["concurrency"]: r for r in results["origin HTTP, ort-cpu"]}[64]["rps"]
    off = results["origin HTTP, ort-cpu, batching off"][0]["rps"]
    c1 = {r["concurrency"]: r for r in results["origin HTTP, ort-cpu"]}[1]["p50_ms"] / raw[1]["p50_ms"]
    ort1 = {r["concurrency"]: r for r in results["origin HTTP, ort-cpu"]}[1]
    raw_mean = raw[1]["mean_ms"]
    summary = [
        f"- HTTP p50 at concurrency 1 (ort-cpu) is {c1:.2f}× raw ORT latency (goal ≤ 1.5×).",
        f"- Where the time goes at concurrency 1 (ort-cpu, means over that run): model run inside the origin {ort1['model_ms']:.3f} ms "
        f"(raw ORT in Python: {raw_mean:.3f} ms), whole request inside the origin {ort1['server_ms']:.3f} ms, "
        f"as the client sees it {1e3 / ort1['rps']:.3f} ms.",
        f"- Micro-batching at concurrency 64 (ort-cpu): {on:.0f} req/s with batching vs {off:.0f} req/s without: {on / off:.2f}×.",
    ]
    print("\n".join(summary))
    manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
    doc = f"""# Origin performance

Measured {datetime.date.today()} on this project's machine ({os.cpu_count()} cores, {platform.machine()}, no GPU) by
`cargo xtask bench-origin` (release build; it runs `python bench/origin_bench.py {model_dir} <libonnxruntime.so> target docs/performance.md`).
Model: `{model_dir}` version `{manifest['version']}`, full model ({manifest['models']['full']['params'].get('architecture', 'ease')}) over {manifest['models']['full']['n_items']} items
(`full.onnx`, {manifest['files']['full.onnx']['bytes'] / 1e6:.1f} MB). Requests: the 100 real test users' histories of `parity.json`,
`k = 10`, round-robin; {REQUESTS[1]}/{REQUESTS[8]}/{REQUESTS[64]} requests at concurrency 1/8/64 from the bounded
`tests/src/bin/loadgen.rs` (the failover suite's load generator, `GET` form) over loopback keep-alive connections. Raw ORT is onnxruntime {ort.__version__} in Python on the same
file with one intra-op thread (the origin's per-session setting), single-row calls from 1/8/64 threads; the origin uses 2
inference workers and micro-batches up to 32 requests. Client and server share the 2 cores.

{table}

{chr(10).join(summary)}

The HTTP latency includes JSON parsing, id mapping, the model run, seen-item filtering, JSON encoding and the loopback
round trip through the load generator; raw ORT is the model run alone.
{GPU_SECTION}"""
    # Keep the edge section that `cargo xtask bench-edge` appends.
    marker = "<!-- edge measurements: cargo xtask bench-edge -->"
    old = open(out_md).read() if os.path.exists(out_md) else ""
    if marker in old:
        doc = doc.rstrip() + "\n\n" + marker + old.split(marker, 1)[1]
    with open(out_md, "w") as f:
        f.write(doc)
    print(f"wrote {out_md}")


if __name__ == "__main__":
    main()
