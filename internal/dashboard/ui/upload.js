// Resumable uploads with tus 1.0.0 at POST /v1/tus/.
//
// Each file gets a row (.upload-row) in a list that lives for the whole
// app, so uploads keep going, and stay visible, when the user leaves the
// assets page and comes back. Unfinished uploads are remembered in
// localStorage by a fingerprint of the file (name + size + lastModified):
// dropping the same file again after a reload resumes it.

import { authHeaders, readError, reportUnauthorized } from './api.js';
import { h, sleep } from './ui.js';

const TUS_ENDPOINT = '/v1/tus/';
const TUS_VERSION = '1.0.0';
const CHUNK = 8 * 1024 * 1024;     // bytes per PATCH
const RETRIES = 4;                  // tries per chunk before "Retry"
const PARALLEL = 2;                 // files uploading at once
const STORE = 'sluice.uploads';     // localStorage: fingerprint -> {location, assetId}

/** The list of upload rows, shared by every visit to the assets page. */
export const uploadList = h('ul', { id: 'uploads', class: 'uploads', 'aria-label': 'Uploads' });

const waiting = [];   // Upload objects not started yet
let active = 0;
const createdListeners = new Set();

/** onCreated registers fn(assetId) called when an upload has made its asset. */
export function onCreated(fn) {
  createdListeners.add(fn);
  return () => createdListeners.delete(fn);
}

/** addFiles queues files (a FileList or array) for upload. */
export function addFiles(files) {
  for (const file of files) {
    const up = new Upload(file);
    uploadList.prepend(up.row);
    waiting.push(up);
  }
  pump();
}

/** pump starts queued uploads up to PARALLEL at a time. */
function pump() {
  while (active < PARALLEL && waiting.length) {
    const up = waiting.shift();
    active++;
    up.run().finally(() => {
      active--;
      pump();
    });
  }
}

// ---- remembered uploads ----

function fingerprint(file) {
  return ['tus', file.name, file.size, file.lastModified].join(':');
}

function loadStore() {
  try {
    return JSON.parse(localStorage.getItem(STORE) || '{}') || {};
  } catch {
    return {};
  }
}

function remember(fp, entry) {
  const all = loadStore();
  if (entry) all[fp] = { ...entry, saved: Date.now() };
  else delete all[fp];
  try { localStorage.setItem(STORE, JSON.stringify(all)); } catch { /* full or unavailable */ }
}

/** b64 encodes a string's UTF-8 bytes as base64 (for Upload-Metadata). */
function b64(s) {
  const bytes = new TextEncoder().encode(s);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** TusError carries an HTTP status so retries can tell what is worth retrying. */
class TusError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function tusError(res) {
  const err = await readError(res);
  if (res.status === 401) reportUnauthorized(err.message);
  return new TusError(res.status, err.message);
}

/** retryable tells whether a failed request may succeed when tried again. */
function retryable(err) {
  const s = err.status || 0;
  return s === 0 || s === 408 || s === 409 || s === 423 || s === 429 || s >= 500;
}

// ---- one upload ----

class Upload {
  constructor(file) {
    this.file = file;
    this.fp = fingerprint(file);
    this.location = '';
    this.assetId = '';
    this.offset = 0;
    this.xhr = null;
    this.buildRow();
  }

  buildRow() {
    this.progress = h('progress', { max: 100, value: 0 });
    this.status = h('span', { class: 'upload-status', text: 'queued' });
    this.link = h('span', { class: 'upload-link' });
    this.retryButton = h('button', { type: 'button', class: 'retry small', text: 'Retry', hidden: true, on: { click: () => this.retry() } });
    this.row = h('li', { class: 'upload-row', dataset: { name: this.file.name } },
      h('span', { class: 'upload-name', title: this.file.name, text: this.file.name }),
      this.progress,
      this.status,
      this.link,
      this.retryButton,
    );
  }

  setStatus(text, state) {
    this.status.textContent = text;
    this.row.dataset.state = state || '';
  }

  setProgress(bytes) {
    const size = this.file.size;
    const pct = size > 0 ? Math.min(100, Math.floor((bytes / size) * 100)) : 100;
    this.progress.value = pct;
    this.setStatus(`uploading ${pct}%`, 'uploading');
  }

  /** setAsset shows the asset id and a link once the upload has one. */
  setAsset(id) {
    if (!id || this.assetId === id) return;
    this.assetId = id;
    this.row.dataset.assetId = id;
    this.link.replaceChildren(h('a', { class: 'asset-link', href: '#/assets/' + encodeURIComponent(id), text: 'open' }));
    for (const fn of createdListeners) fn(id);
  }

  retry() {
    this.retryButton.hidden = true;
    this.setStatus('queued', 'queued');
    waiting.push(this);
    pump();
  }

  /** run uploads the file from wherever it stands; never throws. */
  async run() {
    try {
      this.setStatus('starting', 'uploading');
      await this.resumeOrCreate();
      await this.sendChunks();
      remember(this.fp, null);
      this.progress.value = 100;
      this.setStatus('done', 'done');
    } catch (err) {
      this.setStatus('failed: ' + (err.message || 'upload failed'), 'failed');
      if (err.status !== 401) this.retryButton.hidden = false;
    }
  }

  /** resumeOrCreate finds the remembered upload on the server, or makes one. */
  async resumeOrCreate() {
    if (!this.location) {
      const saved = loadStore()[this.fp];
      if (saved && saved.location) {
        this.location = saved.location;
        if (saved.assetId) this.setAsset(saved.assetId);
      }
    }
    if (this.location) {
      try {
        this.offset = await this.withRetries(() => this.head());
        this.setProgress(this.offset);
        return;
      } catch (err) {
        if (err.status !== 404 && err.status !== 410 && err.status !== 403) throw err;
        // The server forgot it (expired or finished): start over.
        remember(this.fp, null);
        this.location = '';
      }
    }
    await this.withRetries(() => this.create());
  }

  /** create: POST /v1/tus/ -> 201, Location and Sluice-Asset-Id. */
  async create() {
    const meta = ['filename ' + b64(this.file.name)];
    if (this.file.type) meta.push('filetype ' + b64(this.file.type));
    let res;
    try {
      res = await fetch(TUS_ENDPOINT, {
        method: 'POST',
        headers: {
          ...authHeaders(),
          'Tus-Resumable': TUS_VERSION,
          'Upload-Length': String(this.file.size),
          'Upload-Metadata': meta.join(','),
        },
      });
    } catch {
      throw new TusError(0, 'cannot reach the server');
    }
    if (res.status !== 201 && !res.ok) throw await tusError(res);
    const loc = res.headers.get('Location');
    if (!loc) throw new TusError(500, 'server gave no upload location');
    this.location = new URL(loc, new URL(TUS_ENDPOINT, location.href)).href;
    this.offset = 0;
    const assetId = res.headers.get('Sluice-Asset-Id') || '';
    remember(this.fp, { location: this.location, assetId });
    this.setAsset(assetId);
    this.setProgress(0);
  }

  /** head: HEAD <Location> -> Upload-Offset. */
  async head() {
    let res;
    try {
      res = await fetch(this.location, {
        method: 'HEAD',
        cache: 'no-store',
        headers: { ...authHeaders(), 'Tus-Resumable': TUS_VERSION },
      });
    } catch {
      throw new TusError(0, 'cannot reach the server');
    }
    if (!res.ok) {
      if (res.status === 401) reportUnauthorized('');
      throw new TusError(res.status, `upload not found (${res.status})`);
    }
    const off = Number(res.headers.get('Upload-Offset'));
    if (!Number.isFinite(off)) throw new TusError(500, 'server gave no Upload-Offset');
    return off;
  }

  /** sendChunks PATCHes the rest of the file in CHUNK-sized pieces. */
  async sendChunks() {
    while (this.offset < this.file.size) {
      let first = true;
      this.offset = await this.withRetries(async () => {
        // After a failure, ask the server where it stands before resending.
        if (!first) this.offset = await this.head();
        first = false;
        if (this.offset >= this.file.size) return this.offset;
        return this.patch(this.offset);
      });
      this.setProgress(this.offset);
    }
  }

  /** patch sends one chunk from offset with XHR (for progress events). */
  patch(offset) {
    const chunk = this.file.slice(offset, Math.min(offset + CHUNK, this.file.size));
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      this.xhr = xhr;
      xhr.open('PATCH', this.location);
      for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
      xhr.setRequestHeader('Tus-Resumable', TUS_VERSION);
      xhr.setRequestHeader('Upload-Offset', String(offset));
      xhr.setRequestHeader('Content-Type', 'application/offset+octet-stream');
      xhr.upload.onprogress = (e) => this.setProgress(offset + e.loaded);
      xhr.onerror = () => reject(new TusError(0, 'network error'));
      xhr.ontimeout = () => reject(new TusError(0, 'timed out'));
      xhr.onload = () => {
        if (xhr.status === 204 || (xhr.status >= 200 && xhr.status < 300)) {
          const next = Number(xhr.getResponseHeader('Upload-Offset'));
          resolve(Number.isFinite(next) ? next : offset + chunk.size);
          return;
        }
        let message = `${xhr.status} ${xhr.statusText}`;
        try {
          const body = JSON.parse(xhr.responseText);
          if (body && body.error && body.error.message) message = body.error.message;
        } catch { /* not JSON */ }
        if (xhr.status === 401) reportUnauthorized(message);
        reject(new TusError(xhr.status, message));
      };
      xhr.send(chunk);
    });
  }

  /** withRetries runs fn, retrying retryable failures with backoff. */
  async withRetries(fn) {
    for (let i = 0; ; i++) {
      try {
        return await fn();
      } catch (err) {
        if (i >= RETRIES - 1 || !retryable(err)) throw err;
        this.setStatus(`retrying (${err.message})`, 'uploading');
        await sleep(1000 * 2 ** i);
      }
    }
  }
}
