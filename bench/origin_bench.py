"""Origin benchmark: raw ONNX Runtime vs the origin over HTTP, same model, same run.

Raw: Python onnxruntime runs the model's `full.onnx` directly (one session,
one intra-op thread — the origin's per-session setting), single-row calls from
1, 8 and 64 threads. Origin: the release `origin` binary with the ort-cpu and
tract backends, loaded by the bounded `loadgen` (tests/src/bin/loadgen.rs, on tests/src/load.rs) at concurrency 1, 8
and 64 with the same 100 real test histories (`parity.json`). Also ort-cpu at
64 with micro-batching off (`--max-batch 1`) to measure what batching buys.
Peer: FastAPI + onnxruntime under uvicorn (`bench/fastapi_peer.py`, one worker
process per core), the model server a shop would otherwise run, on the same
file, histories and load generator.
RSS is the server's peak resident set (VmHWM; summed over uvicorn's processes) after each run.

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

# What the profile led to; the "before" figures are this command's output at the commit before the change.
CHANGES = """
## What the profile changed

- **The full model's EASE term is one MatMul.** ONNX Runtime's profile showed `Mul` + `ReduceSum` over the gathered
  `[L, n]` rows of `B` taking 39 % of the model's kernel time (ReduceSum alone 209 of 656 µs). The exporter now writes
  the same weighted sum as `weights[:, None, :] @ Gather(B, history)` (`trainer/src/onnx_export.rs`,
  `weighted_gather_sum`; the edge model's `P` sum too). Same scores to 2e-6, same rankings; parity checks in tract and
  ONNX Runtime pass. This command before → after (the MovieLens model directory exported before the change, then retrained with the new exporter): raw ORT p50 0.496 →
  0.296 ms; origin HTTP p50 at concurrency 1 1.109 → 0.792 ms; requests/s at concurrency 64 2251 → 2963. The ratios to
  raw ORT got worse because raw ORT gained the same 0.2 ms the origin did, while the HTTP floor stayed.
- **Tried, not kept:** (1) dedicated inference threads instead of a collector task plus `spawn_blocking` (one hand-off
  fewer): concurrency-1 p50 within the run-to-run noise (±10 %); (2) running the model on the request's own async
  worker when nothing else is queued (no hand-off at all): −6 % p50 at concurrency 1 over three runs, but it blocks an
  async worker for a whole model run (11 ms at 10⁶ items, `docs/scale.md`), which delays every other request queued on
  it.
- **Noise.** Runs of this command on this 2-vCPU machine spread widely (raw ORT p50 0.30–0.39 ms, origin p50 at
  concurrency 1 0.79–1.13 ms over four runs on 2026-11-24), so compare ratios within one run, not figures across runs.
"""
# One uvicorn worker process per core, as its documentation advises.
PEER_WORKERS = os.cpu_count() or 2


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


def backend_loop(target, model_dir, ort_lib):
    """The origin's OrtBackend::run in a loop on one thread (origin/examples/backend_loop.rs): no HTTP, no hand-off."""
    out = subprocess.run([os.path.join(target, "release/examples/backend_loop"), model_dir, ort_lib, str(REQUESTS[1])], check=True, capture_output=True, text=True).stdout
    row = json.loads(out)
    row.update(concurrency=1, errors=0)
    return [row]


def ort_op_profile(model_dir, hist, runs=1000):
    """ONNX Runtime's own profile of single-row runs (enable_profiling): mean µs per run by node, and the run's total."""
    catalog = json.load(open(os.path.join(model_dir, "catalog.json")))["items"]
    index = {item["id"]: i for i, item in enumerate(catalog)}
    n = json.load(open(os.path.join(model_dir, "manifest.json")))["models"]["full"]["n_items"]
    rows = [r for r in ([index[i] for i in h if i in index and index[i] < n] for h in hist) if r]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(os.environ.get("TMPDIR", "/tmp"), "edgerec-ort-profile")
    session = ort.InferenceSession(os.path.join(model_dir, "full.onnx"), opts, providers=["CPUExecutionProvider"])
    for i in range(runs):
        r = rows[i % len(rows)]
        session.run(None, {"history": np.array([r], dtype=np.int64), "weights": np.ones((1, len(r)), dtype=np.float32)})
    path = session.end_profiling()
    nodes = {}
    for e in json.load(open(path)):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            key = (e["args"].get("op_name", "?"), e["name"][: -len("_kernel_time")])
            nodes[key] = nodes.get(key, 0) + e["dur"] / runs
    os.remove(path)
    return nodes


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
    return tuple(values.get(k, 0.0) for k in ("inference_duration_seconds_sum", "inference_duration_seconds_count", "http_sum", "http_count"))


def wait_ready(url, proc, what):
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(url) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{what} did not become ready")
        time.sleep(0.05)


def tree_rss_mb(pid):
    """Peak RSS of `pid` and its children (uvicorn's workers), MB."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return sum(rss_mb(p) for p in pids)


def warm(target, url, hist_file):
    """Warm connections and caches."""
    subprocess.run([os.path.join(target, "release/loadgen"), url, hist_file, "8", "500"], check=True, capture_output=True)


def load(target, url, hist_file, concurrency, profile_pid=None):
    """Runs the load generator at each concurrency; with `profile_pid`, `perf
    record`s that process during the concurrency-1 run (row["perf"])."""
    loadgen = os.path.join(target, "release/loadgen")
    for c in concurrency:
        perf = start_perf(profile_pid) if profile_pid and c == 1 else None
        out = subprocess.run([loadgen, url, hist_file, str(c), str(REQUESTS[c])], check=True, capture_output=True, text=True).stdout
        row = json.loads(out)
        if perf:
            row["perf"] = stop_perf(perf)
        yield c, row


PERF_DATA = "/tmp/edgerec-origin-bench.perf"


def start_perf(pid):
    """`perf record` of `pid` (CPU-clock samples, no call graphs), or None without perf."""
    try:
        proc = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4999", "-p", str(pid), "-o", PERF_DATA], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    time.sleep(0.5)  # perf attaches
    return proc


def stop_perf(proc):
    """Stops `perf record`; answers [(share %, shared object, symbol)] by self time, and the share per shared object."""
    proc.send_signal(2)
    proc.wait(timeout=60)
    report = lambda sort: subprocess.run(["perf", "report", "-i", PERF_DATA, "--stdio", "--no-children", "--sort", sort, "--percent-limit", "0.5"], capture_output=True, text=True).stdout
    def rows(text, fields):
        out = []
        for line in text.splitlines():
            if line.startswith("#") or "%" not in line:
                continue
            parts = line.split(None, fields)
            if len(parts) == fields + 1 or (fields == 1 and len(parts) == 2):
                out.append([float(parts[0].rstrip("%"))] + [p.strip() for p in parts[1:]])
        return out
    return {"dso": rows(report("dso"), 1), "symbols": rows(report("dso,sym"), 2)}


def run_peer(target, model_dir, hist_file, workers):
    port = free_port()
    uvicorn = os.path.join(os.path.dirname(sys.executable), "uvicorn")
    cmd = [uvicorn, "bench.fastapi_peer:app", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "EDGEREC_MODEL_DIR": os.path.abspath(model_dir)})
    try:
        url = f"http://127.0.0.1:{port}/v1/recommendations"
        wait_ready(url + "?history=", proc, "the FastAPI peer")
        warm(target, url, hist_file)
        rows = []
        for _, row in load(target, url, hist_file, CONCURRENCY):
            row["rss_mb"] = tree_rss_mb(proc.pid)
            rows.append(row)
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_origin(target, model_dir, ort_lib, backend, hist_file, extra=(), concurrency=CONCURRENCY, profile=False, model_runs=True):
    port = free_port()
    cmd = [os.path.join(target, "release/origin"), "serve", "--models", model_dir, "--addr", f"127.0.0.1:{port}", "--backend", backend, "--ort-lib", ort_lib, "--admin-token", BENCH_ADMIN_TOKEN, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc, f"origin ({backend})")
        rows = []
        url = f"http://127.0.0.1:{port}/v1/recommendations"
        warm(target, url, hist_file)
        before = server_totals(port)
        for c, row in load(target, url, hist_file, concurrency, proc.pid if profile else None):
            row["rss_mb"] = rss_mb(proc.pid)
            after = server_totals(port)
            d = [a - b for a, b in zip(after, before)]
            if model_runs:
                row["model_ms"] = 1e3 * d[0] / d[1]
            row["server_ms"] = 1e3 * d[2] / d[3]
            before = after
            rows.append(row)
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def perf_section(perf, ops, raw1, loop1, http1):
    """Where the time goes at concurrency 1: the split of the table's rows, the
    origin's CPU samples (perf) by shared object and symbol, and ONNX Runtime's
    own per-node profile of the model."""
    out = ["", "## Where the origin's time goes (concurrency 1)", "",
           f"- The same model run, three ways (p50): raw ORT from Python {raw1['p50_ms']:.3f} ms; the origin's own ORT backend "
           f"(`OrtBackend::run`, the inference workers' call) in a loop on one thread {loop1['p50_ms']:.3f} ms; inside the HTTP origin, "
           f"the model run's mean {http1['model_ms']:.3f} ms (its loop: {loop1['mean_ms']:.3f} ms mean). How the origin builds inputs "
           "and calls ORT costs nothing measurable: the loop matches Python. The run inside the server is slower because it runs on an "
           "inference thread woken for each request on 2 vCPUs shared with the client, not in a hot loop.",
           f"- Around the model, inside the origin: whole request {http1['server_ms']:.3f} ms mean, of which the model run "
           f"{http1['model_ms']:.3f} ms; as the client sees it {1e3 / http1['rps']:.3f} ms (loopback, the load generator's own HTTP client and JSON).",
           ""]
    if perf:
        out += ["`perf record -e cpu-clock -F 4999 -p <origin>` over the concurrency-1 ort-cpu run above (self time; samples of the "
                "origin process only, its threads together; the load generator is another process). ONNX Runtime's symbols are "
                "stripped, so its kernels show as addresses.", "",
                "| shared object | share of the origin's CPU samples |", "|---|---|"]
        out += [f"| `{dso}` | {pct:.1f} % |" for pct, dso in perf["dso"][:8]]
        out += ["", "| symbol (shared object) | share |", "|---|---|"]
        out += [f"| `{sym[:90]}` ({dso}) | {pct:.1f} % |" for pct, dso, sym in perf["symbols"][:12]]
    else:
        out += ["Not profiled with `perf`: it is not installed here."]
    total = sum(ops.values())
    by_op = {}
    for (op, _), us in ops.items():
        by_op[op] = by_op.get(op, 0) + us
    out += ["", f"ONNX Runtime's own profile of the model (`enable_profiling`, 1000 single-row runs, one intra-op thread): "
            f"{total:.0f} µs of kernels per run.", "", "| op | µs per run | share |", "|---|---|---|"]
    out += [f"| {op} | {us:.1f} | {100 * us / total:.1f} % |" for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])[:8]]
    out += ["", "| node | op | µs per run |", "|---|---|---|"]
    out += [f"| `{name}` | {op} | {us:.1f} |" for (op, name), us in sorted(ops.items(), key=lambda kv: -kv[1])[:6]]
    return "\n".join(out) + "\n"


def main():
    model_dir, ort_lib, target, out_md = sys.argv[1:5]
    hist = histories(model_dir)
    hist_file = os.path.join(target, "bench-histories.json")
    json.dump(hist, open(hist_file, "w"))
    RAW, ORIGIN, PEER = "raw onnxruntime (Python, in-process)", "origin HTTP, ort-cpu", f"FastAPI + onnxruntime, uvicorn {PEER_WORKERS} workers (peer)"
    results = {RAW: raw_ort(model_dir, hist)}
    results["origin's ORT backend in a loop, no HTTP (backend_loop)"] = backend_loop(target, model_dir, ort_lib)
    results[ORIGIN] = run_origin(target, model_dir, ort_lib, "ort-cpu", hist_file, profile=True)
    results["origin HTTP, tract"] = run_origin(target, model_dir, ort_lib, "tract", hist_file)
    results["origin HTTP, ort-cpu, batching off"] = run_origin(target, model_dir, ort_lib, "ort-cpu", hist_file, ["--max-batch", "1"], (64,))
    # The HTTP floor: same request sizes, ids the catalog lacks, so the origin answers its popular list without a model run.
    floor_file = os.path.join(target, "bench-histories-unknown.json")
    json.dump([[f"no-such-item-{j}" for j in range(len(h))] for h in hist], open(floor_file, "w"))
    FLOOR = "origin HTTP, no model run (as many unknown ids: the popular list)"
    results[FLOOR] = run_origin(target, model_dir, ort_lib, "ort-cpu", floor_file, concurrency=(1, 64), model_runs=False)
    results[PEER] = run_peer(target, model_dir, hist_file, PEER_WORKERS)
    raw = {r["concurrency"]: r for r in results[RAW]}
    lines = [
        "| setup | concurrency | p50 ms | p99 ms | p99 / p50 | requests/s | p50 vs raw ORT | requests/s vs raw ORT | server RSS MB | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        for r in rows:
            base = raw[r["concurrency"]]
            rss = f"{r['rss_mb']:.0f}" if "rss_mb" in r else "-"
            lines.append(
                f"| {name} | {r['concurrency']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['p99_ms'] / r['p50_ms']:.1f} | {r['rps']:.0f} | "
                f"{r['p50_ms'] / base['p50_ms']:.2f}× | {r['rps'] / base['rps']:.2f}× | {rss} | {r['errors']} |"
            )
    table = "\n".join(lines)
    print(table)
    by_c = lambda name: {r["concurrency"]: r for r in results[name]}
    ours, peer = by_c(ORIGIN), by_c(PEER)
    off = results["origin HTTP, ort-cpu, batching off"][0]["rps"]
    c1 = ours[1]["p50_ms"] / raw[1]["p50_ms"]
    rps64 = ours[64]["rps"] / raw[64]["rps"]
    tail64 = ours[64]["p99_ms"] / ours[64]["p50_ms"]
    verdict = lambda ok: "met" if ok else "**not met**"
    summary = [
        f"- Goal 1, HTTP p50 at concurrency 1 ≤ 1.3× raw ORT: {c1:.2f}× ({ours[1]['p50_ms']:.3f} against {raw[1]['p50_ms']:.3f} ms): {verdict(c1 <= 1.3)}.",
        f"- Goal 2, requests/s at concurrency 64 ≥ raw ORT from 64 threads: {rps64:.2f}× ({ours[64]['rps']:.0f} against {raw[64]['rps']:.0f}): {verdict(rps64 >= 1.0)}.",
        f"- Goal 3, p99 at concurrency 64 ≤ 4× p50: {tail64:.1f}× ({ours[64]['p99_ms']:.1f} against {ours[64]['p50_ms']:.1f} ms): {verdict(tail64 <= 4.0)}.",
        f"- Against the peer: p50 at concurrency 1 {peer[1]['p50_ms'] / ours[1]['p50_ms']:.2f}× ours, requests/s at concurrency 64 "
        f"{ours[64]['rps'] / peer[64]['rps']:.2f}× the peer's, p99 at concurrency 64 {peer[64]['p99_ms'] / ours[64]['p99_ms']:.2f}× ours.",
        f"- Micro-batching at concurrency 64 (ort-cpu): {ours[64]['rps']:.0f} req/s with batching vs {off:.0f} req/s without: {ours[64]['rps'] / off:.2f}×.",
    ]
    floor = by_c(FLOOR)
    summary.append(
        f"- The HTTP floor on this machine: with no model run at all the origin answers at p50 {floor[1]['p50_ms']:.3f} ms (concurrency 1) and "
        f"{floor[64]['rps']:.0f} requests/s (concurrency 64), so raw ORT's p50 plus that floor is already "
        f"{(raw[1]['p50_ms'] + floor[1]['p50_ms']) / raw[1]['p50_ms']:.2f}× raw ORT (goal 1 asks 1.3×), and a server that did nothing but answer would reach "
        f"{floor[64]['rps'] / raw[64]['rps']:.2f}× raw ORT's requests/s while sharing the 2 cores with its load generator."
    )
    print("\n".join(summary))
    loop1 = results["origin's ORT backend in a loop, no HTTP (backend_loop)"][0]
    profile = perf_section(ours[1].get("perf"), ort_op_profile(model_dir, hist), raw[1], loop1, ours[1])
    manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
    doc = f"""# Performance

Two commands write this file: `cargo xtask bench-origin` (this part: the origin against raw ONNX Runtime and a
FastAPI peer, and where its time goes) and `cargo xtask bench-edge` (the edge worker, below).

## Origin

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
round trip through the load generator; raw ORT is the model run alone. The peer runs {PEER_WORKERS} uvicorn worker processes
(one per core), each with its own onnxruntime session of one intra-op thread.
{profile}{CHANGES}{GPU_SECTION}"""
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
