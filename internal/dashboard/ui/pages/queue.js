// Queue page (#/queue): pending jobs per pool, dead letters with replay,
// and recently failed assets.

import { api, query } from '../api.js';
import { h, notice, errorMessage, relativeTime, absoluteTime, debounce } from '../ui.js';
import { lastValue } from '../charts.js';

const REFRESH_MS = 10000;

export function mount(root) {
  const depth = h('div', { id: 'queue-depth', class: 'stats' }, h('p', { class: 'muted', text: 'Loading…' }));
  const dlBody = h('tbody');
  const dlTable = h('table', { id: 'dead-letters', class: 'table' },
    h('thead', {}, h('tr', {},
      h('th', { class: 'num', text: 'Seq' }),
      h('th', { text: 'Asset' }),
      h('th', { text: 'Reason' }),
      h('th', { class: 'num', text: 'Deliveries' }),
      h('th', { text: 'Failed' }),
      h('th', { 'aria-label': 'Actions' }))),
    dlBody);
  const dlNote = h('p', { class: 'muted', hidden: true });
  const dlMore = h('button', { type: 'button', id: 'dead-letters-more', hidden: true, text: 'Load more' });
  const failed = h('ul', { id: 'failed-assets', class: 'link-list' });

  root.append(
    h('section', { class: 'panel' }, h('h1', { text: 'Queue' }), h('h2', { text: 'Pending jobs' }), depth),
    h('section', { class: 'panel' }, h('h2', { text: 'Dead letters' }),
      h('div', { class: 'table-wrap' }, dlTable), dlNote, h('div', { class: 'more-wrap' }, dlMore)),
    h('section', { class: 'panel' }, h('h2', { text: 'Recently failed assets' }), failed),
  );

  let destroyed = false;
  let next = '';
  let timer = 0;

  // ---- pending per pool ----
  async function loadDepth() {
    try {
      const data = await api('/v1/metrics/history');
      if (destroyed) return;
      const pools = [['fast', 'queue_fast'], ['heavy', 'queue_heavy']];
      const series = (data && data.series) || [];
      depth.replaceChildren(...pools.map(([pool, name]) => {
        const s = series.find((x) => x.name === name);
        const v = s ? lastValue(s.points) : null;
        return h('div', { class: 'stat', dataset: { pool } },
          h('span', { class: 'stat-value', text: v === null ? '—' : String(Math.round(v)) }),
          h('span', { class: 'stat-label', text: pool + ' pool' }));
      }));
    } catch (err) {
      if (destroyed) return;
      depth.replaceChildren(h('p', { class: 'muted', text: 'Queue depth unavailable: ' + errorMessage(err) }));
    }
  }

  // ---- dead letters ----
  async function loadDeadLetters(first) {
    try {
      const data = await api('/v1/dead-letters' + query({ after: first ? '' : next }));
      if (destroyed) return;
      if (first) dlBody.replaceChildren();
      for (const d of (data && data.dead_letters) || []) {
        if (dlBody.querySelector(`tr[data-seq="${CSS.escape(String(d.seq))}"]`)) continue;
        dlBody.append(deadLetterRow(d));
      }
      next = data && data.next ? String(data.next) : '';
      dlMore.hidden = !next;
      dlNote.hidden = dlBody.children.length > 0;
      dlNote.textContent = 'No dead letters.';
    } catch (err) {
      if (destroyed) return;
      dlNote.hidden = false;
      dlMore.hidden = true;
      if (err.status === 403) {
        dlNote.textContent = 'admin key needed to see dead letters.';
        dlNote.className = 'muted admin-needed';
      } else {
        dlNote.textContent = 'Could not load dead letters.';
        if (err.status !== 401) notice(errorMessage(err));
      }
    }
  }
  dlMore.addEventListener('click', () => loadDeadLetters(false));

  function deadLetterRow(d) {
    const replay = h('button', { type: 'button', class: 'replay small', text: 'Replay' });
    const tr = h('tr', { class: 'dead-letter', dataset: { seq: String(d.seq) } },
      h('td', { class: 'num', text: String(d.seq) }),
      h('td', {}, d.asset_id ? h('a', { class: 'asset-link', href: '#/assets/' + encodeURIComponent(d.asset_id), text: d.asset_id }) : '—'),
      h('td', { class: 'reason', text: d.reason || '' }),
      h('td', { class: 'num', text: String(d.deliveries ?? '') }),
      h('td', { title: absoluteTime(d.failed_at), text: relativeTime(d.failed_at) }),
      h('td', {}, replay));
    replay.addEventListener('click', async () => {
      replay.disabled = true;
      try {
        await api(`/v1/dead-letters/${encodeURIComponent(d.seq)}/replay`, { method: 'POST', body: {} });
        tr.remove();
        if (!dlBody.children.length) { dlNote.hidden = false; dlNote.textContent = 'No dead letters.'; }
        notice('replayed', 'info');
      } catch (err) {
        replay.disabled = false;
        if (err.status !== 401) notice(errorMessage(err));
      }
    });
    return tr;
  }

  // ---- failed assets ----
  async function loadFailed() {
    try {
      const data = await api('/v1/assets' + query({ status: 'failed', limit: 20 }));
      if (destroyed) return;
      const assets = (data && data.assets) || [];
      failed.replaceChildren(...assets.map((a) => h('li', { dataset: { id: a.id } },
        h('a', { class: 'asset-link', href: '#/assets/' + encodeURIComponent(a.id), text: a.name || a.id }),
        h('span', { class: 'muted', title: absoluteTime(a.updated_at), text: ' · ' + relativeTime(a.updated_at || a.created_at) }),
        a.error ? h('div', { class: 'error-text', text: a.error }) : null)));
      if (!assets.length) failed.append(h('li', { class: 'muted', text: 'No failed assets.' }));
    } catch (err) {
      if (destroyed) return;
      failed.replaceChildren(h('li', { class: 'muted', text: 'Could not load failed assets.' }));
    }
  }
  const refreshFailed = debounce(loadFailed, 500);

  function loadAll() {
    loadDepth();
    loadDeadLetters(true);
    loadFailed();
  }

  function tick() {
    loadDepth();
    timer = setTimeout(tick, REFRESH_MS);
  }

  loadDeadLetters(true);
  loadFailed();
  tick();

  return {
    onUpdate(u) { if (u.status === 'failed') refreshFailed(); },
    onReconnect: loadAll,
    destroy() {
      destroyed = true;
      clearTimeout(timer);
      refreshFailed.cancel();
    },
  };
}
