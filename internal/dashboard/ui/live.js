// The one live-update stream for the whole app: GET /v1/events read with
// fetch() (EventSource cannot send the Authorization header), parsed as
// Server-Sent Events by hand, reconnected with backoff.

import { authHeaders, readError, reportUnauthorized } from './api.js';

const listeners = new Set();       // fn(update) for each "update" event
const stateListeners = new Set();  // fn(connected, reconnected)

let controller = null;  // AbortController of the running stream
let running = false;    // start() called and stop() not yet
let connected = false;
let everConnected = false;
let retryTimer = 0;
let attempt = 0;

/** onUpdate registers fn(update); returns an unsubscribe function. */
export function onUpdate(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/**
 * onState registers fn(connected, reconnected). reconnected is true when
 * the stream came back after a drop: pages then refetch their data, since
 * the stream does not replay what was missed.
 */
export function onState(fn) {
  stateListeners.add(fn);
  return () => stateListeners.delete(fn);
}

/** isConnected tells whether the stream is up. */
export function isConnected() {
  return connected;
}

/** start opens the stream (no-op when it is already running). */
export function start() {
  if (running) return;
  running = true;
  attempt = 0;
  everConnected = false;
  connect();
}

/** stop closes the stream and stops reconnecting. */
export function stop() {
  running = false;
  clearTimeout(retryTimer);
  if (controller) controller.abort();
  controller = null;
  setConnected(false, false);
}

function setConnected(value, reconnected) {
  if (connected === value && !reconnected) return;
  connected = value;
  for (const fn of stateListeners) {
    try { fn(value, reconnected); } catch (err) { console.error(err); }
  }
}

/** connect runs one stream until it ends, then schedules a reconnect. */
async function connect() {
  controller = new AbortController();
  const signal = controller.signal;
  try {
    const res = await fetch('/v1/events', {
      headers: { Accept: 'text/event-stream', ...authHeaders() },
      cache: 'no-store',
      signal,
    });
    if (!res.ok) {
      const err = await readError(res);
      if (res.status === 401) {
        reportUnauthorized(err.message);
        return;
      }
      throw err;
    }
    const reconnected = everConnected;
    everConnected = true;
    attempt = 0;
    setConnected(true, reconnected);
    await readStream(res.body, signal);
  } catch (err) {
    if (signal.aborted) return;
    console.warn('live updates:', err.message || err);
  }
  if (!running || signal.aborted) return;
  setConnected(false, false);
  scheduleReconnect();
}

/** scheduleReconnect waits 1 s, 2 s, 4 s … (max 30 s, with jitter). */
function scheduleReconnect() {
  const base = Math.min(30000, 1000 * 2 ** attempt);
  attempt++;
  const wait = base / 2 + Math.random() * base / 2;
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => { if (running) connect(); }, wait);
}

/** readStream parses SSE from a byte stream until it ends. */
async function readStream(body, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = sseParser(dispatch);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || signal.aborted) break;
      parser(decoder.decode(value, { stream: true }));
    }
  } finally {
    try { reader.releaseLock(); } catch { /* already released */ }
  }
}

/**
 * sseParser returns a function fed with text chunks; it calls
 * onMessage({event, data}) for every complete message. Lines end in \n,
 * \r\n or \r; a blank line ends a message; lines starting with ":" are
 * comments (the server's pings).
 */
export function sseParser(onMessage) {
  let buffer = '';
  let event = '';
  let data = [];
  let lastCR = false; // the previous chunk ended in \r: a \n next belongs to it
  return (chunk) => {
    if (lastCR && chunk.startsWith('\n')) chunk = chunk.slice(1);
    lastCR = chunk.endsWith('\r');
    buffer += chunk;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop(); // the last piece may be an unfinished line
    for (const line of lines) {
      if (line === '') {
        if (data.length) onMessage({ event: event || 'message', data: data.join('\n') });
        event = '';
        data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
  };
}

/** dispatch hands an "update" message to every listener. */
function dispatch(msg) {
  if (msg.event !== 'update') return;
  let update;
  try {
    update = JSON.parse(msg.data);
  } catch {
    return;
  }
  if (!update || !update.asset_id) return;
  for (const fn of listeners) {
    try { fn(update); } catch (err) { console.error(err); }
  }
}
