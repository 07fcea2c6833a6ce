// The pieces around the player on the asset page: storyboard scrubbing,
// the waveform with its playhead, and the clickable transcript. Each one
// follows the <video id="player"> and can seek it.

import { h, fill, clock, sizeCanvas, cssVar } from './ui.js';

/** mediaDuration: the video's duration when known, else the fallback. */
function mediaDuration(video, fallback) {
  const d = video.duration;
  return Number.isFinite(d) && d > 0 ? d : (fallback || 0);
}

/** seekTo moves the player to t seconds. */
function seekTo(video, t) {
  try { video.currentTime = Math.max(0, t); } catch { /* not seekable yet */ }
}

/** cssURL quotes a URL for a CSS url() value. */
function cssURL(url) {
  return 'url("' + String(url).replace(/["\\\n\r]/g, (c) => encodeURIComponent(c)) + '")';
}

// ---- storyboard ----

/**
 * Storyboard fills el (#storyboard) with a bar; hovering shows the tile for
 * that time from the storyboard sheets, clicking seeks.
 *  sb: storyboard.json; sheetURL(name): the URL of a sheet.
 */
export class Storyboard {
  constructor(el, video, sb, sheetURL, fallbackDuration) {
    this.el = el;
    this.video = video;
    this.sb = sb;
    this.sheetURL = sheetURL;
    this.fallback = fallbackDuration || (sb.interval * sb.count);
    this.tile = h('div', { class: 'sb-tile' });
    this.tile.style.width = sb.tile_width + 'px';
    this.tile.style.height = sb.tile_height + 'px';
    this.time = h('span', { class: 'sb-time' });
    this.preview = h('div', { class: 'sb-preview', hidden: true, 'aria-hidden': 'true' }, this.tile, this.time);
    this.played = h('div', { class: 'sb-played' });
    this.track = h('div', { class: 'sb-track', role: 'slider', tabIndex: 0, 'aria-label': 'Storyboard: point to preview, click to seek', 'aria-valuemin': 0 }, this.played);
    el.replaceChildren(this.preview, this.track);
    el.hidden = false;

    this.onMove = (e) => this.show(e.clientX);
    this.onLeave = () => { this.preview.hidden = true; };
    this.onClick = (e) => seekTo(video, this.timeAt(e.clientX));
    this.onKey = (e) => {
      if (e.key === 'ArrowRight') seekTo(video, video.currentTime + sb.interval);
      else if (e.key === 'ArrowLeft') seekTo(video, video.currentTime - sb.interval);
    };
    this.onTime = () => this.progress();
    this.track.addEventListener('pointermove', this.onMove);
    this.track.addEventListener('pointerleave', this.onLeave);
    this.track.addEventListener('click', this.onClick);
    this.track.addEventListener('keydown', this.onKey);
    video.addEventListener('timeupdate', this.onTime);
    video.addEventListener('durationchange', this.onTime);
  }

  destroy() {
    this.video.removeEventListener('timeupdate', this.onTime);
    this.video.removeEventListener('durationchange', this.onTime);
    this.el.replaceChildren();
    this.el.hidden = true;
  }

  duration() {
    return mediaDuration(this.video, this.fallback);
  }

  /** timeAt converts a pointer x to a time. */
  timeAt(clientX) {
    const rect = this.track.getBoundingClientRect();
    const f = Math.min(1, Math.max(0, (clientX - rect.left) / Math.max(1, rect.width)));
    return f * this.duration();
  }

  /** tileFor finds the sheet and the position of the tile covering t. */
  tileFor(t) {
    const sb = this.sb;
    let i = Math.min(sb.count - 1, Math.max(0, Math.floor(t / sb.interval)));
    const sheets = sb.sheets && sb.sheets.length ? sb.sheets : [{ name: 'storyboard.jpg', count: sb.count }];
    for (const sheet of sheets) {
      const n = sheet.count ?? (sheet.rows || sb.rows) * sb.columns;
      if (i < n) {
        return { sheet: sheet.name, col: i % sb.columns, row: Math.floor(i / sb.columns) };
      }
      i -= n;
    }
    const last = sheets[sheets.length - 1];
    return { sheet: last.name, col: 0, row: 0 };
  }

  /** show moves the preview to the pointer and paints the tile. */
  show(clientX) {
    const t = this.timeAt(clientX);
    const tile = this.tileFor(t);
    const url = this.sheetURL(tile.sheet);
    if (url) {
      this.tile.style.backgroundImage = cssURL(url);
      this.tile.style.backgroundPosition = `${-tile.col * this.sb.tile_width}px ${-tile.row * this.sb.tile_height}px`;
    }
    this.time.textContent = clock(t);
    this.preview.hidden = false;
    const rect = this.track.getBoundingClientRect();
    const w = this.sb.tile_width;
    const x = Math.min(Math.max(0, clientX - rect.left - w / 2), Math.max(0, rect.width - w));
    this.preview.style.left = x + 'px';
    this.track.setAttribute('aria-valuenow', String(Math.round(t)));
  }

  /** progress shades the part of the bar already played. */
  progress() {
    const d = this.duration();
    this.played.style.width = d ? Math.min(100, (this.video.currentTime / d) * 100) + '%' : '0';
    this.track.setAttribute('aria-valuemax', String(Math.round(d)));
  }
}

// ---- waveform ----

/**
 * Waveform draws waveform.json (audiowaveform min/max pairs) on a canvas,
 * with a playhead following currentTime; clicking seeks.
 */
export class Waveform {
  constructor(canvas, video, data) {
    this.canvas = canvas;
    this.video = video;
    this.data = data;
    const spp = data.samples_per_pixel || 1;
    const rate = data.sample_rate || 1;
    const pairs = Math.floor((data.data || []).length / ((data.channels || 1) * 2));
    this.fallback = ((data.length || pairs) * spp) / rate;
    this.frame = 0;
    canvas.hidden = false;

    this.onClick = (e) => {
      const rect = canvas.getBoundingClientRect();
      seekTo(video, ((e.clientX - rect.left) / Math.max(1, rect.width)) * mediaDuration(video, this.fallback));
    };
    this.onTime = () => this.drawPlayhead();
    this.onPlay = () => this.loop();
    canvas.addEventListener('click', this.onClick);
    video.addEventListener('timeupdate', this.onTime);
    video.addEventListener('seeked', this.onTime);
    video.addEventListener('play', this.onPlay);
    this.resize = new ResizeObserver(() => this.render());
    this.resize.observe(canvas);
    this.render();
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.resize.disconnect();
    this.canvas.removeEventListener('click', this.onClick);
    this.video.removeEventListener('timeupdate', this.onTime);
    this.video.removeEventListener('seeked', this.onTime);
    this.video.removeEventListener('play', this.onPlay);
    this.canvas.hidden = true;
  }

  /** render paints the waveform into an offscreen canvas, then the playhead. */
  render() {
    const { width, height } = sizeCanvas(this.canvas, 72);
    const dpr = window.devicePixelRatio || 1;
    const off = document.createElement('canvas');
    off.width = this.canvas.width;
    off.height = this.canvas.height;
    const ctx = off.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const d = this.data;
    const channels = d.channels || 1;
    const full = d.bits === 16 ? 32768 : 128;
    const values = d.data || [];
    const pairs = Math.floor(values.length / (2 * channels));
    const mid = height / 2;
    ctx.fillStyle = cssVar('--wave', '#7a9cc6');
    for (let x = 0; x < width; x++) {
      const a = Math.floor((x / width) * pairs);
      const b = Math.max(a + 1, Math.floor(((x + 1) / width) * pairs));
      let lo = 0, hi = 0;
      for (let i = a; i < b && i < pairs; i++) {
        // First channel only: min at 2i*channels, max after it.
        const base = i * 2 * channels;
        lo = Math.min(lo, values[base]);
        hi = Math.max(hi, values[base + 1]);
      }
      const top = mid - (hi / full) * mid;
      const bottom = mid - (lo / full) * mid;
      ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
    this.image = off;
    this.drawPlayhead();
  }

  /** drawPlayhead copies the waveform and draws the current-time line. */
  drawPlayhead() {
    if (!this.image) return;
    const ctx = this.canvas.getContext('2d');
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.drawImage(this.image, 0, 0);
    const dur = mediaDuration(this.video, this.fallback);
    if (!dur) return;
    const x = Math.round((this.video.currentTime / dur) * this.canvas.width);
    ctx.fillStyle = cssVar('--accent', '#2f6fde');
    ctx.fillRect(x - Math.round(dpr), 0, Math.max(2, Math.round(2 * dpr)), this.canvas.height);
  }

  /** loop redraws the playhead every frame while playing. */
  loop() {
    cancelAnimationFrame(this.frame);
    const step = () => {
      this.drawPlayhead();
      if (!this.video.paused && !this.video.ended) this.frame = requestAnimationFrame(step);
    };
    this.frame = requestAnimationFrame(step);
  }
}

// ---- transcript ----

/**
 * Transcript lists transcript.json's segments as .cue elements (data-start
 * in seconds); clicking one seeks there and plays; the cue being spoken
 * gets class "active".
 */
export class Transcript {
  constructor(el, video, doc) {
    this.el = el;
    this.video = video;
    this.active = null;
    const segments = (doc && doc.segments) || [];
    this.cues = segments.map((s, i) => {
      const next = segments[i + 1];
      const start = Number(s.start) || 0;
      const end = s.end !== undefined ? Number(s.end) : (next ? Number(next.start) : Infinity);
      const cue = h('div', { class: 'cue', tabIndex: 0, role: 'button', dataset: { start: String(s.start ?? 0) } },
        h('span', { class: 'cue-time', text: `[${clock(start)}]` }), ' ', h('span', { class: 'cue-text', text: s.text || '' }));
      return { el: cue, start, end };
    });
    const list = h('div', { class: 'cues' }, this.cues.map((c) => c.el));
    const meta = [doc.language, doc.provider, doc.model].filter(Boolean).join(' · ');
    fill(el, h('h2', { text: 'Transcript' }), meta ? h('p', { class: 'muted small', text: meta }) : null,
      this.cues.length ? list : h('p', { text: doc.text || 'No speech found.' }));
    el.hidden = false;
    this.list = list;

    this.onClick = (e) => {
      const cue = e.target.closest('.cue');
      if (!cue) return;
      seekTo(video, Number(cue.dataset.start) || 0);
      const p = video.play();
      if (p && p.catch) p.catch(() => {});
    };
    this.onKey = (e) => { if ((e.key === 'Enter' || e.key === ' ') && e.target.closest('.cue')) { e.preventDefault(); this.onClick(e); } };
    this.onTime = () => this.follow();
    list.addEventListener('click', this.onClick);
    list.addEventListener('keydown', this.onKey);
    video.addEventListener('timeupdate', this.onTime);
    video.addEventListener('seeked', this.onTime);
  }

  destroy() {
    this.video.removeEventListener('timeupdate', this.onTime);
    this.video.removeEventListener('seeked', this.onTime);
    this.el.replaceChildren();
    this.el.hidden = true;
  }

  /** follow marks the cue under currentTime as active. */
  follow() {
    const t = this.video.currentTime;
    let found = null;
    for (const c of this.cues) {
      if (t >= c.start && t < c.end) found = c;
      if (c.start > t) break;
    }
    if (found === this.active) return;
    if (this.active) this.active.el.classList.remove('active');
    this.active = found;
    if (!found) return;
    found.el.classList.add('active');
    // Scroll the list (not the page) so the active cue is visible.
    const list = this.list;
    const top = found.el.offsetTop; // .cues is position: relative
    if (top < list.scrollTop || top + found.el.offsetHeight > list.scrollTop + list.clientHeight) {
      list.scrollTop = Math.max(0, top - list.clientHeight / 3);
    }
  }
}
