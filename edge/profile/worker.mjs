// The edge model's request compute inside workerd, timed from outside (a
// Worker's clock does not advance during computation). `cargo xtask
// bench-edge` binds each wasm build for the web (`target/edge-profile/<build>/web`),
// copies one to `target/edge-profile/current`, starts this under `wrangler dev
// --config edge/profile/wrangler.toml`, uploads the model files, then times
// `/requests?n=N` against `/requests?n=0`. `/load` answers the wasm
// memory in bytes, `/requests` the answers' bytes and the memory.
import { initSync, Bench, wasm_memory_bytes } from "../../target/edge-profile/current/edge_profile.js";
import wasm from "../../target/edge-profile/current/edge_profile_bg.wasm";

initSync({ module: wasm });

const parts = {};
let bench = null;

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const part = url.searchParams.get("part");
    if (url.pathname === "/healthz") return new Response("ok");
    if (url.pathname === "/upload" && request.method === "POST" && part) {
      parts[part] = new Uint8Array(await request.arrayBuffer());
      return new Response("ok");
    }
    if (url.pathname === "/load") {
      const histories = new TextDecoder().decode(parts.histories);
      bench = new Bench(parts.manifest, parts.catalog, parts.onnx, histories);
      return new Response(String(wasm_memory_bytes()));
    }
    if (url.pathname === "/requests" && bench) {
      const bytes = bench.requests(Number(url.searchParams.get("n")));
      return new Response(JSON.stringify({ bytes, memory: wasm_memory_bytes() }));
    }
    return new Response("not found", { status: 404 });
  },
};
