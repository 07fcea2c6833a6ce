// The edge recipe's media step, as it runs ffmpeg.wasm: the whole input is
// written into the module's in-memory file system, then a thumbnail is
// taken with output seeking (-i in -ss T -vframes 1) and the audio copied
// out (-vn -c:a copy). Prints one JSON line with the timings.
//
// usage: node run.mjs INPUT SECONDS OUTDIR
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";

const [input, seconds, outDir] = process.argv.slice(2);
const require = createRequire(import.meta.url);
// The build targets browsers: it wants self and location, and cannot fetch
// its own .wasm, so the binary is handed in.
globalThis.self = globalThis;
globalThis.location = { href: "file:///" };
const { default: createFFmpegCore } = await import("@ffmpeg/core");
const wasmBinary = readFileSync(require.resolve("@ffmpeg/core/wasm"));

const t0 = performance.now();
const core = await createFFmpegCore({ wasmBinary });
const tLoad = performance.now();

core.FS.writeFile("/in.mp4", readFileSync(input));
const tWrite = performance.now();

// exec throws on exit after writing its output (see NOTES.md); the
// output file is read either way.
const run = (args) => {
  try { core.exec(...args); } catch (e) { /* exit */ }
  core.reset?.();
};
run(["-i", "/in.mp4", "-ss", seconds, "-vframes", "1", "/thumb.jpg"]);
const tThumb = performance.now();
run(["-i", "/in.mp4", "-vn", "-c:a", "copy", "/audio.m4a"]);
const tAudio = performance.now();

const thumb = core.FS.readFile("/thumb.jpg");
const audio = core.FS.readFile("/audio.m4a");
writeFileSync(`${outDir}/thumb.jpg`, thumb);
writeFileSync(`${outDir}/audio.m4a`, audio);
console.log(JSON.stringify({
  load_ms: tLoad - t0,
  write_ms: tWrite - tLoad,
  thumbnail_ms: tThumb - tWrite,
  audio_ms: tAudio - tThumb,
  total_ms: tAudio - t0,
  thumb_bytes: thumb.length,
  audio_bytes: audio.length,
  max_rss_mb: process.resourceUsage().maxRSS / 1024,
}));
