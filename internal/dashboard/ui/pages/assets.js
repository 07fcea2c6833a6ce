// Assets page (#/assets): uploads, filters kept in the hash query, the asset
// table with "Load more", and live status changes / new assets.

import { api, query } from '../api.js';
import { h, notice, errorMessage, humanSize, relativeTime, absoluteTime, statusBadge, debounce } from '../ui.js';
import { uploadList, addFiles, onCreated } from '../upload.js';

const STATUSES = ['pending', 'processing', 'succeeded', 'failed'];
const PAGE = 50;

// Pipelines change rarely: fetched once per app load.
let pipelinesPromise = null;
function loadPipelines() {
  if (!pipelinesPromise) {
    pipelinesPromise = api('/v1/pipelines').then((d) => (d && d.pipelines) || []);
    pipelinesPromise.catch(() => { pipelinesPromise = null; });
  }
  return pipelinesPromise;
}

export function mount(root, ctx) {
  const filters = {
    q: ctx.route.params.get('q') || '',
    status: ctx.route.params.get('status') || '',
    pipeline: ctx.route.params.get('pipeline') || '',
  };
  let cursor = '';
  let loadSeq = 0;              // ignore answers to superseded loads
  const rows = new Map();       // asset id -> <tr>
  const fetching = new Set();   // ids being fetched for insertion
  let destroyed = false;

  // ---- upload ----
  const fileInput = h('input', { id: 'file-input', type: 'file', multiple: true });
  const dropzone = h('div', { id: 'dropzone', class: 'dropzone', tabIndex: 0, role: 'region', 'aria-label': 'Upload files' },
    h('p', { class: 'dropzone-title', text: 'Drop files here to upload' }),
    h('label', { class: 'file-pick' }, 'or choose files: ', fileInput),
  );
  fileInput.addEventListener('change', () => {
    if (fileInput.files.length) addFiles(Array.from(fileInput.files));
    fileInput.value = '';
  });
  wireDropzone(dropzone);

  // ---- filters ----
  const search = h('input', { id: 'search', type: 'search', placeholder: 'Search names', value: filters.q, 'aria-label': 'Search by name' });
  const statusSel = h('select', { id: 'status-filter', 'aria-label': 'Status' },
    h('option', { value: '', text: 'All statuses' }),
    STATUSES.map((s) => h('option', { value: s, text: s })));
  statusSel.value = filters.status;
  const pipelineSel = h('select', { id: 'pipeline-filter', 'aria-label': 'Pipeline' },
    h('option', { value: '', text: 'All pipelines' }));
  if (filters.pipeline) pipelineSel.append(h('option', { value: filters.pipeline, text: filters.pipeline }));
  pipelineSel.value = filters.pipeline;

  const applyFilters = () => {
    filters.q = search.value.trim();
    filters.status = statusSel.value;
    filters.pipeline = pipelineSel.value;
    // replaceState: the hash changes (so reload keeps the filters) without
    // a hashchange event re-mounting the page.
    history.replaceState(null, '', '#/assets' + query(filters));
    reload();
  };
  const debouncedSearch = debounce(applyFilters, 300);
  search.addEventListener('input', debouncedSearch);
  search.addEventListener('keydown', (e) => { if (e.key === 'Enter') { debouncedSearch.cancel(); applyFilters(); } });
  statusSel.addEventListener('change', applyFilters);
  pipelineSel.addEventListener('change', applyFilters);

  loadPipelines().then((pipelines) => {
    for (const p of pipelines) {
      if (p.name === filters.pipeline && pipelineSel.querySelector(`option[value="${CSS.escape(p.name)}"]`)) continue;
      pipelineSel.append(h('option', { value: p.name, text: p.name, title: p.doc || '' }));
    }
    pipelineSel.value = filters.pipeline;
  }).catch((err) => console.warn('pipelines:', errorMessage(err)));

  // ---- table ----
  const tbody = h('tbody');
  const table = h('table', { id: 'assets', class: 'table assets-table' },
    h('thead', {}, h('tr', {},
      h('th', { class: 'col-thumb', 'aria-label': 'Thumbnail' }),
      h('th', { text: 'Name' }),
      h('th', { text: 'Status' }),
      h('th', { class: 'col-pipeline', text: 'Pipeline' }),
      h('th', { class: 'col-size num', text: 'Size' }),
      h('th', { class: 'col-created', text: 'Created' }))),
    tbody);
  const empty = h('p', { class: 'muted empty', hidden: true, text: 'No assets match.' });
  const more = h('button', { id: 'more', type: 'button', hidden: true, text: 'Load more' });
  more.addEventListener('click', () => loadPage(false));

  root.append(
    h('section', { class: 'panel upload-panel' }, h('h2', { text: 'Upload' }), dropzone, uploadList),
    h('section', { class: 'panel' },
      h('div', { class: 'toolbar' }, h('h1', { text: 'Assets' }),
        h('div', { class: 'filters' }, search, statusSel, pipelineSel)),
      h('div', { class: 'table-wrap' }, table),
      empty,
      h('div', { class: 'more-wrap' }, more)),
  );

  // ---- loading ----

  /** loadPage fetches one page; first replaces the table, else appends. */
  async function loadPage(first) {
    const seq = ++loadSeq;
    more.disabled = true;
    try {
      const data = await api('/v1/assets' + query({ limit: PAGE, cursor: first ? '' : cursor, ...filters }));
      if (seq !== loadSeq || destroyed) return;
      if (first) {
        tbody.replaceChildren();
        rows.clear();
      }
      for (const a of (data && data.assets) || []) {
        if (rows.has(a.id)) continue;
        const tr = assetRow(a);
        rows.set(a.id, tr);
        tbody.append(tr);
      }
      cursor = (data && data.next_cursor) || '';
      more.dataset.cursor = cursor;
      more.hidden = !cursor;
      empty.hidden = rows.size > 0;
    } catch (err) {
      if (seq === loadSeq && !destroyed && err.status !== 401) notice(errorMessage(err));
    } finally {
      more.disabled = false;
    }
  }

  function reload() {
    cursor = '';
    return loadPage(true);
  }

  /** matches tells whether an asset passes the current filters. */
  function matches(a) {
    if (filters.status && a.status !== filters.status) return false;
    if (filters.pipeline && (a.pipeline || '') !== filters.pipeline) return false;
    if (filters.q && !String(a.name || '').toLowerCase().includes(filters.q.toLowerCase())) return false;
    return true;
  }

  /** insertNew fetches an asset that is not in the table and puts it on top. */
  async function insertNew(id) {
    if (rows.has(id) || fetching.has(id)) return;
    fetching.add(id);
    try {
      const a = await api('/v1/assets/' + encodeURIComponent(id));
      if (destroyed || rows.has(id) || !matches(a)) return;
      const tr = assetRow(a);
      rows.set(id, tr);
      tbody.prepend(tr);
      empty.hidden = true;
    } catch (err) {
      console.warn('asset', id, errorMessage(err));
    } finally {
      fetching.delete(id);
    }
  }

  /** refreshRow refetches one asset (e.g. for its thumbnail once done). */
  async function refreshRow(id) {
    try {
      const a = await api('/v1/assets/' + encodeURIComponent(id));
      const old = rows.get(id);
      if (destroyed || !old) return;
      const tr = assetRow(a);
      old.replaceWith(tr);
      rows.set(id, tr);
    } catch (err) {
      console.warn('asset', id, errorMessage(err));
    }
  }

  function onUpdate(u) {
    const tr = rows.get(u.asset_id);
    if (!tr) {
      if (u.status === 'pending' && (!filters.status || filters.status === 'pending')) insertNew(u.asset_id);
      return;
    }
    if (u.status && u.status !== tr.dataset.status) {
      setRowStatus(tr, u.status);
      if (u.status === 'succeeded' || u.status === 'failed') refreshRow(u.asset_id);
    }
  }

  const offCreated = onCreated((id) => {
    if (!rows.has(id) && (!filters.status || filters.status === 'pending')) insertNew(id);
  });
  const ticker = setInterval(() => {
    for (const td of tbody.querySelectorAll('td.col-created[data-time]')) td.textContent = relativeTime(td.dataset.time);
  }, 30000);

  reload();

  return {
    onUpdate,
    onReconnect: reload,
    destroy() {
      destroyed = true;
      debouncedSearch.cancel();
      offCreated();
      clearInterval(ticker);
      uploadList.remove(); // kept alive by upload.js for the next visit
    },
  };
}

/** setRowStatus changes a row's status badge in place. */
function setRowStatus(tr, status) {
  tr.dataset.status = status;
  const old = tr.querySelector('.status');
  if (old) old.replaceWith(statusBadge(status));
}

/** thumbnailOf picks the list thumbnail, or the detail document's output. */
function thumbnailOf(a) {
  if (a.thumbnail_url) return a.thumbnail_url;
  const o = (a.outputs || []).find((x) => x.name === 'thumbnail.jpg');
  return o ? o.url : '';
}

/** assetRow builds one tr.asset-row. */
function assetRow(a) {
  const href = '#/assets/' + encodeURIComponent(a.id);
  const thumb = thumbnailOf(a);
  return h('tr', { class: 'asset-row', dataset: { id: a.id, status: a.status || '' } },
    h('td', { class: 'col-thumb' },
      thumb ? h('img', { src: thumb, alt: '', loading: 'lazy', decoding: 'async', width: 64, height: 36, class: 'thumb' })
        : h('span', { class: 'thumb thumb-empty', 'aria-hidden': 'true' })),
    h('td', { class: 'col-name' },
      h('a', { class: 'asset-link', href, text: a.name || a.id }),
      a.quarantined ? h('span', { class: 'tag warn', title: a.quarantined, text: 'quarantined' }) : null),
    h('td', {}, statusBadge(a.status)),
    h('td', { class: 'col-pipeline', text: a.pipeline || '—' }),
    h('td', { class: 'col-size num', text: humanSize(a.size) }),
    h('td', { class: 'col-created', title: absoluteTime(a.created_at), dataset: { time: a.created_at || '' }, text: relativeTime(a.created_at) }),
  );
}

/** wireDropzone makes el accept dropped files. */
function wireDropzone(el) {
  let depth = 0;
  el.addEventListener('dragenter', (e) => { e.preventDefault(); depth++; el.classList.add('over'); });
  el.addEventListener('dragover', (e) => { e.preventDefault(); if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy'; });
  el.addEventListener('dragleave', () => { depth = Math.max(0, depth - 1); if (!depth) el.classList.remove('over'); });
  el.addEventListener('drop', (e) => {
    e.preventDefault();
    depth = 0;
    el.classList.remove('over');
    const files = e.dataTransfer ? Array.from(e.dataTransfer.files || []) : [];
    if (files.length) addFiles(files);
  });
}

// A file dropped beside the drop zone would make the browser leave the
// dashboard to open it: refuse such drops everywhere else.
window.addEventListener('dragover', (e) => { if (!e.target.closest || !e.target.closest('#dropzone')) e.preventDefault(); });
window.addEventListener('drop', (e) => { if (!e.target.closest || !e.target.closest('#dropzone')) e.preventDefault(); });

