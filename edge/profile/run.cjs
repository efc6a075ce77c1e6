// Runs the wasm32 profile (built by `cargo xtask bench-edge` with
// wasm-bindgen --target nodejs) in node's V8 and prints the Profile as JSON.
// Usage: node run.cjs <wasm-bindgen out dir> <model dir> <histories.json> <passes>
const fs = require("fs");
const path = require("path");
const [pkg, dir, histories, passes] = process.argv.slice(2);
const { profile_edge } = require(path.resolve(pkg, "edge_profile.js"));
const read = (name) => fs.readFileSync(path.join(dir, name));
process.stdout.write(
  profile_edge(read("manifest.json"), read("edge_catalog.json"), read("edge.onnx"), fs.readFileSync(histories, "utf8"), Number(passes)),
);
