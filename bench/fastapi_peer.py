"""The peer in the origin benchmark: the model server a shop would otherwise
put in front of `full.onnx`, written the way FastAPI's documentation and most
shops write one. A sync endpoint (FastAPI runs it in its thread pool),
onnxruntime with one intra-op thread per session, the same id mapping, seen
filter and JSON answer as the origin, no batching. Served by uvicorn with
uvloop and httptools (`uvicorn[standard]`) and one worker process per core.

    EDGEREC_MODEL_DIR=models/movielens .venv/bin/uvicorn bench.fastapi_peer:app --workers 2 --port 8000 --log-level warning

Used only by `bench/origin_bench.py`; not a part of edgerec.
"""

import json
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse

MAX_HISTORY = 500  # shared::contract::MAX_HISTORY

MODEL_DIR = os.environ["EDGEREC_MODEL_DIR"]
with open(os.path.join(MODEL_DIR, "manifest.json")) as f:
    MANIFEST = json.load(f)
with open(os.path.join(MODEL_DIR, "catalog.json")) as f:
    CATALOG = json.load(f)["items"]
INDEX = {item["id"]: i for i, item in enumerate(CATALOG)}
N_ITEMS = MANIFEST["models"]["full"]["n_items"]
_opts = ort.SessionOptions()
_opts.intra_op_num_threads = 1
SESSION = ort.InferenceSession(os.path.join(MODEL_DIR, MANIFEST["models"]["full"]["file"]), _opts, providers=["CPUExecutionProvider"])
MODEL = {"name": "full", "version": MANIFEST["version"], "backend": "onnxruntime-python", "dataset": MANIFEST["dataset"]}

app = FastAPI()


@app.get("/v1/recommendations")
def recommendations(history: str = "", k: int = Query(10, ge=1, le=100), exclude_seen: bool = True):
    ids = [i for i in history.split(",") if i]
    if len(ids) > MAX_HISTORY:
        raise HTTPException(status_code=422, detail=f"history has {len(ids)} items, at most {MAX_HISTORY}")
    known = [INDEX[i] for i in ids if i in INDEX]
    unknown = [i for i in ids if i not in INDEX]
    row = [i for i in known if i < N_ITEMS][-MAX_HISTORY:]
    seen = set(known) if exclude_seen else set()
    items = []
    if row:
        scores, indices = SESSION.run(["scores", "indices"], {"history": np.array([row], dtype=np.int64), "weights": np.ones((1, len(row)), dtype=np.float32)})
        for score, i in zip(scores[0].tolist(), indices[0].tolist()):
            if len(items) == k:
                break
            if i not in seen:
                items.append({"item_id": CATALOG[i]["id"], "score": score, "title": CATALOG[i]["title"]})
    for i, item in enumerate(CATALOG):  # popular fill
        if len(items) == k:
            break
        if i not in seen and all(x["item_id"] != item["id"] for x in items):
            items.append({"item_id": item["id"], "score": items[-1]["score"] if row and items else float(item["popularity"]), "title": item["title"]})
    warnings = [f"unknown item ids ignored: {', '.join(unknown)}"] if unknown else []
    source = "origin" if row else "popular"
    return JSONResponse({"items": items, "source": source, "model": MODEL, "warnings": warnings}, headers={"x-rec-source": source})
