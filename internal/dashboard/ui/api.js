// API access: the stored key, the Authorization header, JSON calls and
// error handling. Every /v1 request goes through here (or uses
// authHeaders() for the few that cannot, like XHR uploads).

const KEY_NAME = 'sluice.key';

/** ApiError is thrown for any non-2xx answer. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `request failed (${status})`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code || '';
  }
}

let unauthorizedHandler = () => {};

/** onUnauthorized sets what happens when any call answers 401. */
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

/** reportUnauthorized runs the 401 handler (used by non-fetch callers too). */
export function reportUnauthorized(message) {
  unauthorizedHandler(message);
}

// ---- key storage ----

/** getKey returns the stored API key, or "" (session first, then remembered). */
export function getKey() {
  try {
    return sessionStorage.getItem(KEY_NAME) || localStorage.getItem(KEY_NAME) || '';
  } catch {
    return '';
  }
}

/** setKey stores the key for this tab, or on this device when remember is set. */
export function setKey(key, remember) {
  forgetKey();
  (remember ? localStorage : sessionStorage).setItem(KEY_NAME, key);
}

/** forgetKey removes the key from both storages. */
export function forgetKey() {
  try {
    sessionStorage.removeItem(KEY_NAME);
    localStorage.removeItem(KEY_NAME);
  } catch { /* storage unavailable */ }
}

/** authHeaders returns {Authorization: "Bearer …"} when a key is set. */
export function authHeaders(key = getKey()) {
  return key ? { Authorization: 'Bearer ' + key } : {};
}

/**
 * readError builds an ApiError from a failed Response, using the
 * {"error":{"code","message"}} body when there is one.
 */
export async function readError(res) {
  let code = '';
  let message = '';
  try {
    const text = await res.text();
    const body = JSON.parse(text);
    if (body && body.error) {
      code = body.error.code || '';
      message = body.error.message || '';
    }
  } catch { /* not JSON */ }
  if (!message) message = `${res.status} ${res.statusText || 'error'}`.trim();
  return new ApiError(res.status, code, message);
}

/**
 * api calls a /v1 endpoint and returns the parsed JSON (null for an empty
 * body). Options: method, body (sent as JSON), signal, key (override the
 * stored key; "" sends none), noRedirect (do not treat 401 as "signed
 * out"). Throws ApiError.
 */
export async function api(path, opts = {}) {
  const headers = { Accept: 'application/json', ...authHeaders(opts.key !== undefined ? opts.key : getKey()) };
  const init = { method: opts.method || 'GET', headers, signal: opts.signal, cache: 'no-store' };
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'cannot reach the server');
  }
  if (!res.ok) {
    const err = await readError(res);
    if (res.status === 401 && !opts.noRedirect) unauthorizedHandler(err.message);
    throw err;
  }
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** query builds "?a=1&b=2" from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

// Output files (thumbnails, JSON documents) carry their own signature: they
// are fetched as they are, without the Authorization header. Parsed JSON is
// cached per output name + etag so live re-renders do not refetch.
const outputCache = new Map();

/** outputKey identifies one version of an output. */
export function outputKey(o) {
  if (!o) return '';
  return o.name + '|' + (o.etag || String(o.url).split('?')[0]);
}

/** fetchOutputJSON fetches an output document (cached by outputKey). */
export function fetchOutputJSON(o) {
  const key = outputKey(o);
  if (!outputCache.has(key)) {
    const p = fetchOutput(o.url).then(async (res) => {
      if (!res.ok) throw new Error(`${o.name}: ${res.status}`);
      return res.json();
    });
    p.catch(() => outputCache.delete(key));
    outputCache.set(key, p);
    if (outputCache.size > 200) outputCache.delete(outputCache.keys().next().value);
  }
  return outputCache.get(key);
}

/**
 * fetchOutput fetches an output URL as it is; should a same-origin one still
 * ask for credentials (an unsigned URL), it tries once more with the key.
 */
export async function fetchOutput(url, signal) {
  const res = await fetch(url, { cache: 'no-store', signal });
  const sameOrigin = new URL(url, location.href).origin === location.origin;
  if ((res.status === 401 || res.status === 403) && sameOrigin && getKey()) {
    return fetch(url, { cache: 'no-store', signal, headers: authHeaders() });
  }
  return res;
}

/** fetchOutputText fetches an output as text (not cached). */
export async function fetchOutputText(url, signal) {
  const res = await fetchOutput(url, signal);
  if (!res.ok) throw new Error(`${url.split('?')[0]}: ${res.status}`);
  return res.text();
}
