// The information panels of the asset page: tags, moderation, summary,
// description, OCR text, audio analysis and the media info table. Each
// takes a container and fills it from a parsed JSON document.

import { h, fill, clock, percent, humanSize } from '../ui.js';

/** provenance: "provider · model" under a panel title. */
function provenance(doc) {
  const s = [doc && doc.provider, doc && doc.model].filter(Boolean).join(' · ');
  return s ? h('p', { class: 'muted small', text: s }) : null;
}

/** pretty shows a document as indented JSON. */
function pretty(doc) {
  return h('pre', { class: 'json', text: JSON.stringify(doc, null, 2) });
}

/** tags: chips with the score as a percentage. */
export function renderTags(el, doc) {
  const labels = ((doc && doc.labels) || []).slice().sort((a, b) => (b.score || 0) - (a.score || 0));
  fill(el, h('h2', { text: 'Tags' }), provenance(doc),
    labels.length
      ? h('ul', { class: 'chips' }, labels.map((l) => h('li', { class: 'chip', dataset: { tag: l.name } },
        h('span', { class: 'chip-name', text: l.name }),
        l.score !== undefined ? h('span', { class: 'chip-score', text: percent(l.score) }) : null)))
      : h('p', { class: 'muted', text: 'No tags.' }));
}

/** moderation: flagged yes/no, the top categories, flagged frames. */
export function renderModeration(el, doc) {
  const cats = Object.entries((doc && doc.categories) || {}).sort((a, b) => b[1] - a[1]).slice(0, 5);
  const frames = ((doc && doc.frames) || []).filter((f) => f.flagged);
  fill(el, h('h2', { text: 'Moderation' }), provenance(doc),
    h('p', { class: 'flagged ' + (doc.flagged ? 'yes' : 'no') }, 'Flagged: ', h('strong', { text: doc.flagged ? 'yes' : 'no' })),
    cats.length ? h('table', { class: 'kv' }, h('tbody', {}, cats.map(([name, score]) =>
      h('tr', {}, h('th', { text: name }), h('td', { class: 'num' }, meter(score), ' ', percent(score, 1)))))) : null,
    frames.length ? h('p', { class: 'muted small', text: 'Flagged at ' + frames.map((f) => clock(f.time)).join(', ') }) : null);
}

/** meter is a small bar for a 0..1 score. */
function meter(v) {
  const bar = h('span', { class: 'meter-fill' });
  bar.style.width = Math.round(Math.min(1, Math.max(0, v || 0)) * 100) + '%';
  return h('span', { class: 'meter', 'aria-hidden': 'true' }, bar);
}

/** text panels (summary.json, description.json): text, else pretty JSON. */
export function renderText(el, title, doc) {
  fill(el, h('h2', { text: title }), provenance(doc),
    doc && typeof doc.text === 'string' ? h('p', { class: 'prose', text: doc.text }) : pretty(doc));
}

/** OCR: the text found, per frame when the document has frames. */
export function renderOCR(el, doc) {
  let body;
  const frames = (doc && (doc.frames || doc.results || doc.items)) || null;
  if (doc && typeof doc.text === 'string' && doc.text.trim()) {
    body = h('p', { class: 'prose', text: doc.text });
  } else if (Array.isArray(frames)) {
    const rows = frames.filter((f) => f && (f.text || (f.lines && f.lines.length)));
    body = rows.length
      ? h('ul', { class: 'ocr-list' }, rows.map((f) => h('li', {},
        f.time !== undefined ? h('span', { class: 'cue-time', text: `[${clock(f.time)}] ` }) : null,
        f.text || f.lines.map((l) => (typeof l === 'string' ? l : l.text)).join(' '))))
      : h('p', { class: 'muted', text: 'No text found.' });
  } else {
    body = pretty(doc);
  }
  fill(el, h('h2', { text: 'Text in picture (OCR)' }), provenance(doc), body);
}

/** analysis.json: loudness and the counts of silences, scenes, black parts. */
export function renderAnalysis(el, doc) {
  const l = (doc && doc.loudness) || {};
  const num = (v, unit) => (v === undefined || v === null ? '—' : Number(v).toFixed(1) + ' ' + unit);
  const count = (a) => (Array.isArray(a) ? String(a.length) : '—');
  fill(el, h('h2', { text: 'Analysis' }),
    h('table', { class: 'kv' }, h('tbody', {},
      kv('Integrated loudness', num(l.integrated_lufs, 'LUFS')),
      kv('Loudness range', num(l.range_lu, 'LU')),
      kv('True peak', num(l.true_peak_dbtp, 'dBTP')),
      doc.duration !== undefined ? kv('Duration', clock(doc.duration)) : null,
      kv('Silences', count(doc.silence)),
      kv('Scene changes', count(doc.scenes)),
      kv('Black parts', count(doc.black)))));
}

function kv(k, v) {
  return h('tr', {}, h('th', { text: k }), h('td', { text: v }));
}

/** bitrate formats bits per second. */
function bitrate(bps) {
  if (!bps) return '—';
  return bps >= 1e6 ? (bps / 1e6).toFixed(2) + ' Mb/s' : Math.round(bps / 1e3) + ' kb/s';
}

/** media info: the container, then one line per stream. */
export function renderMediaInfo(el, media) {
  if (!media) {
    fill(el, h('caption', { text: 'Media info' }), h('tbody', {}, kv('Media', 'not probed yet')));
    return;
  }
  const rows = [
    kv('Container', [media.container, media.format].filter(Boolean).join(' / ') || '—'),
    kv('Duration', media.duration ? clock(media.duration) + ` (${Number(media.duration).toFixed(2)} s)` : '—'),
    kv('Bit rate', bitrate(media.bit_rate)),
  ];
  if (media.width && media.height) rows.push(kv('Size', `${media.width}×${media.height}` + (media.rotation ? ` (rotated ${media.rotation}°)` : '')));
  // A still picture (FFmpeg's image "pipe" demuxers) has a nominal frame
  // rate that means nothing.
  const still = /_pipe$/.test(media.format || '');
  for (const s of media.streams || []) {
    const parts = [s.codec, s.profile && `profile ${s.profile}`];
    if (s.type === 'video') {
      parts.push(s.width && s.height && `${s.width}×${s.height}`, !still && s.frame_rate && `${+Number(s.frame_rate).toFixed(3)} fps`, s.pix_fmt);
    } else if (s.type === 'audio') {
      parts.push(s.sample_rate && `${s.sample_rate} Hz`, s.channel_layout || (s.channels && `${s.channels} ch`));
    }
    if (s.bit_rate) parts.push(bitrate(s.bit_rate));
    rows.push(h('tr', { class: 'stream', dataset: { stream: String(s.index ?? ''), type: s.type || '' } },
      h('th', { text: `Stream ${s.index ?? ''} (${s.type || '?'})` }),
      h('td', { text: parts.filter(Boolean).join(', ') })));
  }
  fill(el, h('caption', { text: 'Media info' }), h('tbody', {}, rows));
}

/** outputs table rows: name (link), type, size. */
export function renderOutputs(el, outputs) {
  fill(el,
    h('thead', {}, h('tr', {}, h('th', { text: 'Output' }), h('th', { text: 'Step' }), h('th', { text: 'Type' }), h('th', { class: 'num', text: 'Size' }))),
    h('tbody', {}, (outputs || []).map((o) => h('tr', { class: 'output', dataset: { name: o.name } },
      h('td', {}, h('a', { href: o.url, target: '_blank', rel: 'noopener noreferrer', text: o.name })),
      h('td', { class: 'muted', text: o.step || '' }),
      h('td', { class: 'muted', text: o.content_type || '' }),
      h('td', { class: 'num', text: humanSize(o.size) })))),
  );
}
