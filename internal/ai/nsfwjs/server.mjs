// Sluice's nsfwjs sidecar: classifies JPEG and PNG images with nsfwjs's
// MobileNetV2 model (its weights ship inside the npm package) on the
// TensorFlow.js WebAssembly backend, so it needs no network and no native
// build. Sluice's ai.NSFW starts it, talks to it over loopback and kills
// it on Close; it is not meant to be run by hand except to debug.
//
//   node server.mjs [--port 0] [--model MobileNetV2] [--max-bytes N] [--max-pixels N]
//
// It listens on 127.0.0.1 only and, once the model is loaded, prints one
// JSON line on stdout: {"port":N,"model":"MobileNetV2","backend":"wasm",...}.
// Everything else it says goes to stderr.
//
//   POST /classify   body: the image bytes  ->  [{"className":"Neutral","probability":0.97}, ...]
//   GET  /healthz    -> {"ok":true,...}
//
// When SLUICE_NSFWJS_TOKEN is set, requests must carry it as
// "Authorization: Bearer <token>", so that other local users cannot use
// the listener. The process exits when its stdin closes, so that it does
// not outlive the Sluice process that started it.

import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { timingSafeEqual } from "node:crypto";

// stdout carries only the ready line; libraries log with console.*.
console.log = console.info = console.debug = console.warn;

const here = dirname(fileURLToPath(import.meta.url));

function arg(name, def) {
  const i = process.argv.indexOf("--" + name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const port = Number(arg("port", "0"));
const modelName = arg("model", "MobileNetV2");
const maxBytes = Number(arg("max-bytes", String(32 << 20)));
const maxPixels = Number(arg("max-pixels", String(50e6)));
const token = process.env.SLUICE_NSFWJS_TOKEN || "";
const modelModules = {
  MobileNetV2: ["nsfwjs/models/mobilenet_v2", "MobileNetV2Model"],
  MobileNetV2Mid: ["nsfwjs/models/mobilenet_v2_mid", "MobileNetV2MidModel"],
  InceptionV3: ["nsfwjs/models/inception_v3", "InceptionV3Model"],
};

function fail(msg) {
  process.stderr.write(`nsfwjs sidecar: ${msg}\n`);
  process.exit(1);
}

if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad --port ${arg("port")}`);
if (!modelModules[modelName]) fail(`unknown --model ${modelName}; one of ${Object.keys(modelModules).join(", ")}`);

// Leave when the parent goes away (its end of our stdin closes).
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));

let tf, jpeg, PNG, model;
try {
  tf = await import("@tensorflow/tfjs");
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  const { load } = await import("nsfwjs/core");
  jpeg = (await import("jpeg-js")).default;
  ({ PNG } = (await import("pngjs")).default);

  // The .wasm binaries sit in the package; without this the backend
  // would look for them next to the page, as in a browser.
  wasm.setWasmPaths(join(here, "node_modules/@tensorflow/tfjs-backend-wasm/dist") + "/");
  if (!(await tf.setBackend("wasm"))) throw new Error("cannot initialize the tfjs wasm backend");
  await tf.ready();

  const [modPath, modExport] = modelModules[modelName];
  const modelDef = (await import(modPath))[modExport];
  model = await load(modelName, { modelDefinitions: [modelDef] });
} catch (e) {
  fail(`cannot load ${modelName}: ${e.message} (reinstall the modules: npm ci in ${here})`);
}

function version(pkg) {
  try {
    return JSON.parse(readFileSync(join(here, "node_modules", pkg, "package.json"), "utf8")).version;
  } catch {
    return "";
  }
}
const info = {
  model: modelName,
  backend: tf.getBackend(),
  nsfwjs: version("nsfwjs"),
  tfjs: version("@tensorflow/tfjs"),
};

class HTTPError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// decode returns the image as RGB bytes; alpha is composited over white,
// as a transparent drawing would be shown.
function decode(buf) {
  let width, height, data, channels;
  if (buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) {
    try {
      const img = jpeg.decode(buf, {
        useTArray: true,
        formatAsRGBA: false,
        maxResolutionInMP: maxPixels / 1e6,
        maxMemoryUsageInMB: 1024,
      });
      ({ width, height, data } = img);
      channels = 3;
    } catch (e) {
      throw new HTTPError(400, `cannot decode JPEG: ${e.message}`);
    }
  } else if (buf.length >= 24 && buf.readUInt32BE(0) === 0x89504e47 && buf.readUInt32BE(4) === 0x0d0a1a0a) {
    // IHDR comes first: check the size before inflating.
    const w = buf.readUInt32BE(16), h = buf.readUInt32BE(20);
    if (w * h > maxPixels) throw new HTTPError(413, `image is ${w}x${h}, over ${maxPixels} pixels`);
    try {
      ({ width, height, data } = PNG.sync.read(buf));
      channels = 4;
    } catch (e) {
      throw new HTTPError(400, `cannot decode PNG: ${e.message}`);
    }
  } else {
    throw new HTTPError(415, "not a JPEG or PNG image");
  }
  if (!width || !height) throw new HTTPError(400, "image has no pixels");
  if (channels === 3) return { width, height, rgb: data };
  const n = width * height;
  const rgb = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const a = data[i * 4 + 3];
    for (let c = 0; c < 3; c++) {
      rgb[i * 3 + c] = (data[i * 4 + c] * a + 255 * (255 - a) + 127) / 255;
    }
  }
  return { width, height, rgb };
}

async function classify(buf) {
  const { width, height, rgb } = decode(buf);
  const img = tf.tensor3d(rgb, [height, width, 3], "int32");
  try {
    const out = await model.classify(img, 5);
    return out.map(({ className, probability }) => ({ className, probability }));
  } finally {
    img.dispose();
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"] || 0);
    if (declared > maxBytes) return reject(new HTTPError(413, `body over ${maxBytes} bytes`));
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size > maxBytes) {
        reject(new HTTPError(413, `body over ${maxBytes} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks, size)));
    req.on("error", reject);
  });
}

function authorized(req) {
  if (!token) return true;
  const got = Buffer.from(req.headers.authorization || "");
  const want = Buffer.from("Bearer " + token);
  return got.length === want.length && timingSafeEqual(got, want);
}

function send(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data) });
  res.end(data);
}

const server = createServer(async (req, res) => {
  try {
    if (!authorized(req)) throw new HTTPError(401, "missing or wrong bearer token");
    const path = (req.url || "").split("?")[0];
    if (path === "/healthz") {
      if (req.method !== "GET") throw new HTTPError(405, "use GET");
      return send(res, 200, { ok: true, ...info });
    }
    if (path === "/classify") {
      if (req.method !== "POST") throw new HTTPError(405, "use POST");
      const body = await readBody(req);
      return send(res, 200, await classify(body));
    }
    throw new HTTPError(404, "not found");
  } catch (e) {
    const status = e instanceof HTTPError ? e.status : 500;
    if (status === 500) process.stderr.write(`nsfwjs sidecar: ${e.stack || e}\n`);
    if (!res.headersSent) send(res, status, { error: e.message || String(e) });
    else res.destroy();
  }
});
server.requestTimeout = 60_000;
server.headersTimeout = 10_000;
server.on("error", (e) => fail(`listen: ${e.message}`));
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port, ...info }) + "\n");
});
