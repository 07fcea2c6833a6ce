// Video/audio playback for the asset page.
//
// choosePlayback() picks, in order: (a) our own small MSE player for the
// asset's HLS output (fMP4 segments), (b) native HLS (Safari), (c) an MP4
// output, or audio.m4a; else null (the page shows the thumbnail instead).
// video.dataset.source tells which: "mse", "native", "mp4" or "audio".

import { fetchOutputText } from './api.js';

const MAX_HEIGHT = 1080;
const AHEAD = 30;   // seconds to keep buffered ahead of currentTime
const BEHIND = 30;  // seconds to keep behind it before evicting

// ---- playlists ----

/** parseAttributes reads an HLS attribute list: A=1,B="x,y" -> {A:"1",B:"x,y"}. */
export function parseAttributes(s) {
  const out = {};
  const re = /([A-Z0-9-]+)=("[^"]*"|[^,]*)/g;
  let m;
  while ((m = re.exec(s))) out[m[1]] = m[2].replace(/^"|"$/g, '');
  return out;
}

/** parseMaster lists the variants of a master playlist, URIs resolved. */
export function parseMaster(text, baseURL) {
  const variants = [];
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].startsWith('#EXT-X-STREAM-INF:')) continue;
    const attrs = parseAttributes(lines[i].slice('#EXT-X-STREAM-INF:'.length));
    let uri = '';
    for (let j = i + 1; j < lines.length; j++) {
      if (lines[j] && !lines[j].startsWith('#')) { uri = lines[j]; i = j; break; }
    }
    if (!uri) continue;
    const [w, hgt] = (attrs.RESOLUTION || '').split('x').map(Number);
    variants.push({
      url: new URL(uri, baseURL).href,
      bandwidth: Number(attrs.BANDWIDTH) || 0,
      width: w || 0,
      height: hgt || 0,
      codecs: attrs.CODECS || '',
    });
  }
  return variants;
}

/** parseMedia reads a variant playlist: init segment and timed segments. */
export function parseMedia(text, baseURL) {
  let init = '';
  const segments = [];
  let pending = null;
  let t = 0;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith('#EXT-X-MAP:')) {
      const a = parseAttributes(line.slice('#EXT-X-MAP:'.length));
      if (a.URI) init = new URL(a.URI, baseURL).href;
    } else if (line.startsWith('#EXTINF:')) {
      pending = parseFloat(line.slice('#EXTINF:'.length)) || 0;
    } else if (!line.startsWith('#')) {
      const d = pending || 0;
      segments.push({ url: new URL(line, baseURL).href, start: t, end: t + d, duration: d });
      t += d;
      pending = null;
    }
  }
  return { init, segments, duration: t };
}

/** mimeFor is the MSE type for a variant's codecs. */
function mimeFor(codecs) {
  return codecs ? `video/mp4; codecs="${codecs}"` : 'video/mp4';
}

/** pickVariant: the highest variant <= 1080p that MSE can play. */
export function pickVariant(variants) {
  const playable = variants.filter((v) => window.MediaSource && MediaSource.isTypeSupported(mimeFor(v.codecs)));
  const fit = playable.filter((v) => !v.height || v.height <= MAX_HEIGHT);
  const pool = fit.length ? fit : playable.slice().sort((a, b) => a.height - b.height).slice(0, 1);
  pool.sort((a, b) => (b.height - a.height) || (b.bandwidth - a.bandwidth));
  return pool[0] || null;
}

// ---- source choice ----

/**
 * choosePlayback decides how to play an asset. outputs: the asset's
 * outputs. Returns {kind, url, key, variant?} or null.
 */
export async function choosePlayback(video, outputs, signal) {
  const byName = new Map(outputs.map((o) => [o.name, o]));
  const master = byName.get('hls/master.m3u8');
  if (master) {
    if (window.MediaSource) {
      try {
        const text = await fetchOutputText(master.url, signal);
        const variant = pickVariant(parseMaster(text, master.url));
        if (variant) return { kind: 'mse', url: master.url, variant, output: master };
      } catch (err) {
        if (signal && signal.aborted) throw err;
        console.warn('hls master:', err.message);
      }
    }
    if (video.canPlayType('application/vnd.apple.mpegurl')) return { kind: 'native', url: master.url, output: master };
  }
  // A whole MP4 file; an HLS rendition's init.mp4 is video/mp4 too, but
  // only the start of a stream.
  const mp4 = outputs.find((o) => (o.content_type || '').split(';')[0].trim() === 'video/mp4' &&
    o.step !== 'hls' && !o.name.startsWith('hls/'));
  if (mp4) return { kind: 'mp4', url: mp4.url, output: mp4 };
  const audio = byName.get('audio.m4a');
  if (audio) return { kind: 'audio', url: audio.url, output: audio };
  return null;
}

/**
 * attach starts playback of a choice on the video element and returns a
 * player object with destroy().
 */
export function attach(video, choice) {
  video.dataset.source = choice.kind;
  if (choice.kind === 'mse') return new MSEPlayer(video, choice.variant);
  video.src = choice.url;
  return {
    destroy() {
      video.removeAttribute('src');
      video.load();
    },
  };
}

// ---- the MSE player ----

/**
 * MSEPlayer plays one HLS variant of fMP4 segments through Media Source
 * Extensions: init segment first, then segments in order, keeping about
 * AHEAD seconds buffered past currentTime, jumping on seeks, and calling
 * endOfStream() once the last segment is in.
 */
class MSEPlayer {
  constructor(video, variant) {
    this.video = video;
    this.variant = variant;
    this.abort = new AbortController();
    this.ms = new MediaSource();
    this.sb = null;
    this.playlist = null;
    this.busy = false;       // a fetch or append is in flight
    this.initDone = false;
    this.next = 0;           // index of the next segment to consider
    this.destroyed = false;
    this.objectURL = URL.createObjectURL(this.ms);

    this.onSeeking = () => this.seek();
    this.onTick = () => this.pump();
    video.addEventListener('seeking', this.onSeeking);
    video.addEventListener('timeupdate', this.onTick);
    video.addEventListener('play', this.onTick);
    this.timer = setInterval(this.onTick, 1000);
    this.ms.addEventListener('sourceopen', () => this.open(), { once: true });
    video.src = this.objectURL;
  }

  destroy() {
    this.destroyed = true;
    this.abort.abort();
    clearInterval(this.timer);
    this.video.removeEventListener('seeking', this.onSeeking);
    this.video.removeEventListener('timeupdate', this.onTick);
    this.video.removeEventListener('play', this.onTick);
    this.video.removeAttribute('src');
    this.video.load();
    URL.revokeObjectURL(this.objectURL);
  }

  /** open: fetch the variant playlist, set the duration, add the buffer. */
  async open() {
    try {
      const text = await fetchOutputText(this.variant.url, this.abort.signal);
      if (this.destroyed) return;
      this.playlist = parseMedia(text, this.variant.url);
      if (!this.playlist.segments.length) throw new Error('empty playlist');
      this.ms.duration = this.playlist.duration;
      this.sb = this.ms.addSourceBuffer(mimeFor(this.variant.codecs));
      this.sb.mode = 'segments';
      this.sb.addEventListener('updateend', () => this.pump());
      await this.append(await this.fetch(this.playlist.init));
      this.initDone = true;
      this.pump();
    } catch (err) {
      if (!this.destroyed) this.fail(err);
    }
  }

  fail(err) {
    console.error('player:', err);
    this.video.dispatchEvent(new CustomEvent('playererror', { detail: String(err.message || err) }));
  }

  /** fetch gets a segment's bytes, retrying twice. */
  async fetch(url) {
    let last;
    for (let i = 0; i < 3; i++) {
      try {
        const res = await fetch(url, { signal: this.abort.signal });
        if (!res.ok) throw new Error(`segment ${res.status}`);
        return await res.arrayBuffer();
      } catch (err) {
        if (this.abort.signal.aborted) throw err;
        last = err;
        await new Promise((r) => setTimeout(r, 500 * (i + 1)));
      }
    }
    throw last;
  }

  /** append adds bytes to the SourceBuffer and waits for updateend. */
  append(bytes) {
    return new Promise((resolve, reject) => {
      const done = () => { this.sb.removeEventListener('error', fail); resolve(); };
      const fail = () => { this.sb.removeEventListener('updateend', done); reject(new Error('append failed')); };
      this.sb.addEventListener('updateend', done, { once: true });
      this.sb.addEventListener('error', fail, { once: true });
      this.sb.appendBuffer(bytes);
    });
  }

  /** buffered tells whether time t is inside a buffered range. */
  isBuffered(t) {
    const b = this.sb.buffered;
    for (let i = 0; i < b.length; i++) if (t >= b.start(i) && t < b.end(i)) return true;
    return false;
  }

  /** segmentAt is the index of the segment covering time t. */
  segmentAt(t) {
    const segs = this.playlist.segments;
    for (let i = 0; i < segs.length; i++) if (t < segs[i].end) return i;
    return segs.length - 1;
  }

  /** seek: start loading from the segment under the new position. */
  seek() {
    if (!this.playlist) return;
    this.next = this.segmentAt(this.video.currentTime);
    this.pump();
  }

  /**
   * pump appends the next needed segment, if any: the first segment from
   * `next` onwards that starts within AHEAD seconds of currentTime and is
   * not buffered yet. After the last one, endOfStream().
   */
  async pump() {
    if (this.destroyed || !this.initDone || this.busy || !this.sb || this.sb.updating) return;
    const segs = this.playlist.segments;
    const now = this.video.currentTime;
    const from = Math.max(this.segmentAt(now), 0);
    if (this.next < from) this.next = from;
    // Skip what is already buffered.
    while (this.next < segs.length && this.isBuffered((segs[this.next].start + segs[this.next].end) / 2)) this.next++;
    if (this.next >= segs.length) {
      this.finish();
      return;
    }
    const seg = segs[this.next];
    if (seg.start > now + AHEAD) return;
    this.busy = true;
    const index = this.next;
    try {
      this.evict(now);
      const bytes = await this.fetch(seg.url);
      if (this.destroyed) return;
      await this.waitIdle();
      if (this.ms.readyState === 'closed') return;
      await this.append(bytes);
      if (this.next === index) this.next = index + 1;
    } catch (err) {
      if (err && err.name === 'QuotaExceededError') this.evict(now, true);
      else if (!this.destroyed && !this.abort.signal.aborted) this.fail(err);
    } finally {
      this.busy = false;
    }
    if (!this.destroyed) setTimeout(() => this.pump(), 0);
  }

  /** finish ends the stream once every segment is in. */
  finish() {
    if (this.ms.readyState !== 'open' || this.sb.updating) return;
    try {
      this.ms.endOfStream();
    } catch (err) {
      console.warn('endOfStream:', err.message);
    }
  }

  /** evict drops media well behind the playhead to bound memory. */
  evict(now, hard = false) {
    const keep = hard ? 5 : BEHIND;
    const b = this.sb.buffered;
    if (!b.length || this.sb.updating) return;
    const cut = now - keep;
    if (b.start(0) < cut - (hard ? 0 : 10)) {
      try { this.sb.remove(0, cut); } catch { /* updating */ }
    }
  }

  /** waitIdle resolves when the SourceBuffer is not updating. */
  waitIdle() {
    if (!this.sb.updating) return Promise.resolve();
    return new Promise((resolve) => this.sb.addEventListener('updateend', () => resolve(), { once: true }));
  }
}
