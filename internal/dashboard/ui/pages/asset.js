// Asset page (#/assets/ID): header, player with storyboard / waveform /
// transcript, insight panels, the step timeline and the outputs. Live
// updates for this asset refetch it and re-render everything except the
// parts whose source output did not change (the player keeps playing).

import { api, outputKey, fetchOutputJSON } from '../api.js';
import * as live from '../live.js';
import { h, fill, notice, errorMessage, humanSize, relativeTime, absoluteTime, duration, debounce, safeToken } from '../ui.js';
import { choosePlayback, attach } from '../player.js';
import { Storyboard, Waveform, Transcript } from '../media.js';
import { renderTags, renderModeration, renderText, renderOCR, renderAnalysis, renderMediaInfo, renderOutputs } from './asset-panels.js';

const POLL_MS = 3000; // refetch while processing when the live stream is down

export function mount(root, ctx) {
  const id = ctx.route.parts.slice(1).join('/');
  const page = new AssetPage(root, id);
  page.load();
  return {
    onUpdate: (u) => page.onUpdate(u),
    onReconnect: () => page.load(),
    destroy: () => page.destroy(),
  };
}

class AssetPage {
  constructor(root, id) {
    this.id = id;
    this.asset = null;
    this.destroyed = false;
    this.keys = {};          // section -> outputKey it was last built from
    this.parts = {};         // section -> object with destroy()
    this.pollTimer = 0;
    this.loadSeq = 0;
    this.refetch = debounce(() => this.load(), 300);
    this.build(root);
  }

  // ---- skeleton ----

  build(root) {
    this.nameEl = h('h1', { class: 'asset-name', text: 'Loading…' });
    this.statusEl = h('span', { id: 'asset-status', class: 'status', 'aria-live': 'polite' });
    this.reprocessBtn = h('button', { id: 'reprocess', type: 'button', text: 'Reprocess', title: 'Run every step again' });
    this.reprocessBtn.addEventListener('click', () => this.reprocess(null));
    this.deleteBtn = h('button', { id: 'delete-asset', type: 'button', class: 'danger', text: 'Delete', title: 'Delete this asset with its source and every output' });
    this.deleteBtn.addEventListener('click', () => this.remove());
    this.metaEl = h('dl', { class: 'meta' });
    this.errorEl = h('p', { id: 'asset-error', class: 'error-text', hidden: true });
    this.quarantineEl = h('p', { class: 'quarantine', hidden: true });
    this.degradedEl = h('div', { class: 'degraded', hidden: true });

    this.video = h('video', { id: 'player', controls: true, playsInline: true, preload: 'metadata' });
    this.video.setAttribute('playsinline', '');
    this.video.addEventListener('playererror', (e) => notice('Playback: ' + e.detail));
    this.fallbackEl = h('div', { class: 'player-fallback', hidden: true });
    this.storyboardEl = h('div', { id: 'storyboard', class: 'storyboard', hidden: true });
    this.waveformEl = h('canvas', { id: 'waveform', class: 'waveform', hidden: true, 'aria-label': 'Waveform: click to seek' });
    this.transcriptEl = h('section', { id: 'transcript', class: 'transcript card', hidden: true });

    const card = (elId) => h('section', { id: elId, class: 'card', hidden: true });
    this.panels = {
      'summary.json': card('summary'),
      'description.json': card('description'),
      'tags.json': card('tags'),
      'moderation.json': card('moderation'),
      'ocr.json': card('ocr'),
      'analysis.json': card('analysis'),
    };
    this.mediaInfoEl = h('table', { id: 'media-info', class: 'kv media-info' });
    this.stepsEl = h('div', { id: 'steps', class: 'steps' });
    this.outputsEl = h('table', { id: 'outputs', class: 'table outputs' });

    this.el = h('section', { id: 'asset', class: 'asset', dataset: { id: this.id } },
      h('p', { class: 'crumbs' }, h('a', { href: '#/assets', text: '← Assets' })),
      h('div', { class: 'asset-head panel' },
        h('div', { class: 'title-row' }, this.nameEl, this.statusEl, h('span', { class: 'spacer' }), this.reprocessBtn, this.deleteBtn),
        this.metaEl, this.errorEl, this.quarantineEl, this.degradedEl),
      h('div', { class: 'asset-grid' },
        h('div', { class: 'media-col' },
          h('div', { class: 'player-box' }, this.video, this.fallbackEl),
          this.storyboardEl, this.waveformEl, this.transcriptEl),
        h('aside', { class: 'info-col' },
          Object.values(this.panels),
          h('section', { class: 'card' }, this.mediaInfoEl))),
      h('section', { class: 'panel' }, h('h2', { text: 'Steps' }), this.stepsEl),
      h('section', { class: 'panel' }, h('h2', { text: 'Outputs' }), h('div', { class: 'table-wrap' }, this.outputsEl)));
    root.append(this.el);
  }

  destroy() {
    this.destroyed = true;
    this.refetch.cancel();
    clearTimeout(this.pollTimer);
    if (this.choiceAbort) this.choiceAbort.abort();
    for (const p of Object.values(this.parts)) if (p && p.destroy) p.destroy();
    this.parts = {};
  }

  // ---- data ----

  async load() {
    const seq = ++this.loadSeq;
    clearTimeout(this.pollTimer);
    try {
      const asset = await api('/v1/assets/' + encodeURIComponent(this.id));
      if (this.destroyed || seq !== this.loadSeq) return;
      this.asset = asset;
      this.render(asset);
    } catch (err) {
      if (this.destroyed || seq !== this.loadSeq) return;
      if (err.status === 404) this.notFound();
      else if (err.status !== 401) notice(errorMessage(err));
    }
    this.schedulePoll();
  }

  /** schedulePoll refetches while the asset runs and no live stream is up. */
  schedulePoll() {
    const a = this.asset;
    if (this.destroyed || !a || live.isConnected()) return;
    if (a.status === 'pending' || a.status === 'processing') this.pollTimer = setTimeout(() => this.load(), POLL_MS);
  }

  notFound() {
    this.nameEl.textContent = 'Asset not found';
    this.statusEl.hidden = true;
    this.reprocessBtn.hidden = true;
    this.deleteBtn.hidden = true;
    this.errorEl.hidden = false;
    this.errorEl.textContent = `No asset with id ${this.id}.`;
  }

  onUpdate(u) {
    if (u.asset_id !== this.id) return;
    if (u.status) this.setStatus(u.status);
    if (u.step && u.step_status) {
      const row = this.stepsEl.querySelector(`.step[data-step="${CSS.escape(u.step)}"]`);
      if (row) {
        row.dataset.status = u.step_status;
        const badge = row.querySelector('.status');
        if (badge) { badge.textContent = u.step_status; badge.className = 'status status-' + safeToken(u.step_status); }
      }
    }
    this.refetch();
  }

  setStatus(status) {
    this.statusEl.hidden = false;
    this.statusEl.textContent = status;
    this.statusEl.className = 'status status-' + safeToken(status);
    this.el.dataset.status = status;
  }

  async reprocess(step) {
    if (!step && !confirm('Run every step of this asset again?')) return;
    const btn = step ? this.stepsEl.querySelector(`.step[data-step="${CSS.escape(step)}"] .reprocess-step`) : this.reprocessBtn;
    if (btn) btn.disabled = true;
    try {
      await api(`/v1/assets/${encodeURIComponent(this.id)}/reprocess`, { method: 'POST', body: step ? { steps: [step] } : {} });
      notice(step ? `reprocessing step ${step}` : 'reprocessing', 'info');
      this.load();
    } catch (err) {
      if (err.status !== 401) notice(errorMessage(err));
    } finally {
      if (btn) btn.disabled = false;
    }
  }

  async remove() {
    if (!confirm('Delete this asset, its source and every output? This cannot be undone.')) return;
    this.deleteBtn.disabled = true;
    try {
      await api(`/v1/assets/${encodeURIComponent(this.id)}`, { method: 'DELETE' });
      notice('asset deleted', 'info');
      location.hash = '#/assets';
    } catch (err) {
      if (err.status !== 401) notice(errorMessage(err));
      this.deleteBtn.disabled = false;
    }
  }

  // ---- rendering ----

  render(a) {
    document.title = (a.name || a.id) + ' · Sluice';
    this.nameEl.textContent = a.name || a.id;
    this.nameEl.title = a.id;
    this.setStatus(a.status);
    this.renderMeta(a);
    this.errorEl.hidden = !a.error;
    this.errorEl.textContent = a.error || '';
    this.quarantineEl.hidden = !a.quarantined;
    this.quarantineEl.textContent = a.quarantined ? 'Quarantined: ' + a.quarantined : '';
    this.renderDegraded(a.degraded || []);

    const outputs = a.outputs || [];
    this.byName = new Map(outputs.map((o) => [o.name, o]));
    this.setupPlayer(a, outputs);
    this.setupCaptions();
    this.setupStoryboard(a);
    this.setupWaveform();
    this.setupTranscript();
    for (const [name, el] of Object.entries(this.panels)) this.setupPanel(name, el);
    renderMediaInfo(this.mediaInfoEl, a.media);
    renderSteps(this.stepsEl, a.steps || [], (step) => this.reprocess(step));
    renderOutputs(this.outputsEl, outputs);
  }

  renderMeta(a) {
    const items = [
      ['Pipeline', a.pipeline || '—'],
      ['Size', humanSize(a.size)],
      ['Type', a.content_type || '—'],
      ['Created', relativeTime(a.created_at), absoluteTime(a.created_at)],
      ['Updated', relativeTime(a.updated_at), absoluteTime(a.updated_at)],
      ['Visibility', a.visibility || '—'],
      ['ID', a.id],
    ];
    for (const [k, v] of Object.entries(a.metadata || {})) items.push([k, v]);
    this.metaEl.replaceChildren(...items.map(([k, v, title]) =>
      h('div', { class: 'meta-item' }, h('dt', { text: k }), h('dd', { text: v, title: title || undefined }))));
  }

  renderDegraded(list) {
    this.degradedEl.hidden = !list.length;
    this.degradedEl.replaceChildren(
      h('strong', { text: 'Degraded: ' }),
      h('ul', { class: 'degraded-list' }, list.map((d) => h('li', { dataset: { step: d.step } }, h('code', { text: d.step }), ' — ', d.reason || ''))));
  }

  /** changed records a section's output key; true when it differs. */
  changed(section, key) {
    if (this.keys[section] === key) return false;
    this.keys[section] = key;
    if (this.parts[section]) {
      this.parts[section].destroy();
      delete this.parts[section];
    }
    return true;
  }

  /**
   * setupPlayer (re)starts playback only when the playable output (HLS
   * master, else MP4, else audio) changed; otherwise it leaves the player
   * alone so updates do not reset playback.
   */
  async setupPlayer(a, outputs) {
    const thumb = this.byName.get('thumbnail.jpg');
    if (thumb && this.video.dataset.poster !== outputKey(thumb)) {
      this.video.poster = thumb.url;
      this.video.dataset.poster = outputKey(thumb);
    }
    const mp4 = outputs.find((o) => (o.content_type || '').startsWith('video/mp4'));
    const source = this.byName.get('hls/master.m3u8') || mp4 || this.byName.get('audio.m4a');
    const key = source ? outputKey(source) : 'none:' + a.status;
    if (!this.changed('player', key)) return;
    if (this.choiceAbort) this.choiceAbort.abort();
    const abort = new AbortController();
    this.choiceAbort = abort;
    let choice = null;
    try {
      choice = await choosePlayback(this.video, outputs, abort.signal);
    } catch (err) {
      if (abort.signal.aborted) return;
      console.warn(err);
    }
    if (abort.signal.aborted || this.destroyed) return;
    if (!choice) {
      this.showFallback(a);
      return;
    }
    this.video.hidden = false;
    this.fallbackEl.hidden = true;
    this.parts.player = attach(this.video, choice);
  }

  /** showFallback: no playable output; show a picture and a note instead. */
  showFallback(a) {
    this.video.hidden = true;
    this.video.dataset.source = 'none';
    const picture = this.byName.get('preview.webp') || this.byName.get('thumbnail.jpg') ||
      (a.outputs || []).find((o) => (o.content_type || '').startsWith('image/'));
    const running = a.status === 'pending' || a.status === 'processing';
    const still = (a.content_type || '').startsWith('image/');
    let note = running ? 'Nothing to play yet: the asset is still being processed.' : 'No playable output for this asset.';
    if (still && picture) note = ''; // a picture is all an image has to show
    fill(this.fallbackEl,
      picture ? h('img', { src: picture.url, alt: a.name || 'preview', class: 'fallback-image' }) : null,
      note ? h('p', { class: 'muted', text: note }) : null);
    this.fallbackEl.hidden = false;
  }

  /** setupCaptions adds transcript.vtt as a captions track. */
  setupCaptions() {
    const vtt = this.byName.get('transcript.vtt');
    if (!this.changed('captions', outputKey(vtt))) return;
    for (const t of this.video.querySelectorAll('track')) t.remove();
    if (!vtt) return;
    this.video.append(h('track', { kind: 'captions', src: vtt.url, label: 'Transcript', srclang: 'en' }));
  }

  async setupStoryboard(a) {
    const doc = this.byName.get('storyboard/storyboard.json');
    if (!this.changed('storyboard', outputKey(doc)) || !doc) return;
    try {
      const sb = await fetchOutputJSON(doc);
      if (this.destroyed || this.keys.storyboard !== outputKey(doc)) return;
      if (!sb || !sb.count || !sb.interval || !sb.columns) return;
      const sheetURL = (name) => {
        const o = this.byName.get('storyboard/' + name);
        return o ? o.url : new URL(name, doc.url).href;
      };
      const dur = (a.media && a.media.duration) || sb.interval * sb.count;
      this.parts.storyboard = new Storyboard(this.storyboardEl, this.video, sb, sheetURL, dur);
    } catch (err) {
      console.warn('storyboard:', err.message);
    }
  }

  async setupWaveform() {
    const doc = this.byName.get('waveform.json');
    if (!this.changed('waveform', outputKey(doc)) || !doc) return;
    try {
      const data = await fetchOutputJSON(doc);
      if (this.destroyed || this.keys.waveform !== outputKey(doc)) return;
      this.parts.waveform = new Waveform(this.waveformEl, this.video, data);
    } catch (err) {
      console.warn('waveform:', err.message);
    }
  }

  async setupTranscript() {
    const doc = this.byName.get('transcript.json');
    if (!this.changed('transcript', outputKey(doc)) || !doc) return;
    try {
      const data = await fetchOutputJSON(doc);
      if (this.destroyed || this.keys.transcript !== outputKey(doc)) return;
      this.parts.transcript = new Transcript(this.transcriptEl, this.video, data);
    } catch (err) {
      console.warn('transcript:', err.message);
    }
  }

  /** setupPanel fills one insight card from its JSON output. */
  async setupPanel(name, el) {
    const out = this.byName.get(name);
    const key = outputKey(out);
    if (this.keys['panel:' + name] === key) return;
    this.keys['panel:' + name] = key;
    if (!out) {
      el.hidden = true;
      el.replaceChildren();
      return;
    }
    try {
      const doc = await fetchOutputJSON(out);
      if (this.destroyed || this.keys['panel:' + name] !== key) return;
      switch (name) {
        case 'tags.json': renderTags(el, doc); break;
        case 'moderation.json': renderModeration(el, doc); break;
        case 'summary.json': renderText(el, 'Summary', doc); break;
        case 'description.json': renderText(el, 'Description', doc); break;
        case 'ocr.json': renderOCR(el, doc); break;
        case 'analysis.json': renderAnalysis(el, doc); break;
      }
      el.hidden = false;
    } catch (err) {
      if (this.destroyed) return;
      el.replaceChildren(h('p', { class: 'muted', text: `Could not load ${name}: ${errorMessage(err)}` }));
      el.hidden = false;
    }
  }
}

// ---- step timeline ----

function time(s) {
  const t = s ? Date.parse(s) : NaN;
  return Number.isFinite(t) ? t : null;
}

/**
 * renderSteps draws one .step row per step: a Gantt bar placed by
 * started_at..finished_at relative to the earliest start, the duration,
 * attempts (retries highlighted), error/reason and a rerun button.
 */
function renderSteps(el, steps, onRerun) {
  if (!steps.length) {
    el.replaceChildren(h('p', { class: 'muted', text: 'No steps yet.' }));
    return;
  }
  const now = Date.now();
  const spans = steps.map((s) => {
    const start = time(s.started_at);
    let end = time(s.finished_at);
    if (start !== null && end === null && s.status === 'running') end = now;
    return { start, end };
  });
  const starts = spans.map((x) => x.start).filter((x) => x !== null);
  const ends = spans.map((x) => x.end ?? x.start).filter((x) => x !== null);
  const t0 = starts.length ? Math.min(...starts) : 0;
  const t1 = ends.length ? Math.max(...ends) : t0;
  const total = Math.max(1, t1 - t0);

  const rows = steps.map((s, i) => {
    const { start, end } = spans[i];
    const bar = h('div', { class: 'step-bar status-' + safeToken(s.status) });
    if (start !== null) {
      bar.style.left = ((start - t0) / total) * 100 + '%';
      bar.style.width = Math.max(0.5, (((end ?? start) - start) / total) * 100) + '%';
    } else {
      bar.hidden = true;
    }
    const ms = s.duration_ms || (start !== null && end !== null ? end - start : null);
    const retries = Math.max(0, (s.attempts || 0) - 1);
    const attempts = h('span', { class: 'step-attempts' + (retries ? ' retries' : ''),
      title: retries ? `${retries} ${retries === 1 ? 'retry' : 'retries'}` : '',
      text: s.attempts ? `${s.attempts} ${s.attempts === 1 ? 'attempt' : 'attempts'}` : '' });
    const rerun = h('button', { type: 'button', class: 'reprocess-step small', dataset: { step: s.name }, text: 'Rerun', title: `Run ${s.name} again` });
    rerun.addEventListener('click', () => onRerun(s.name));
    const msg = s.error || s.reason;
    return h('div', { class: 'step', dataset: { step: s.name, status: s.status || '' } },
      h('div', { class: 'step-name' }, h('code', { text: s.name }), ' ', h('span', { class: 'status status-' + safeToken(s.status), text: s.status || '' })),
      h('div', { class: 'step-track', title: start !== null ? `${absoluteTime(s.started_at)} → ${s.finished_at ? absoluteTime(s.finished_at) : 'running'}` : 'not started' }, bar),
      h('span', { class: 'step-duration', text: ms ? duration(ms) : '—' }),
      attempts,
      rerun,
      msg ? h('p', { class: 'step-msg' + (s.error ? ' error-text' : ''), text: msg }) : null);
  });
  el.replaceChildren(...rows);
}
