// Metrics page (#/metrics): one hand-drawn chart per distinct "chart" of
// GET /v1/metrics/history, refreshed every 10 s. In a cluster the history
// covers every process that reports to the serving gateway.

import { api } from '../api.js';
import { h, notice, errorMessage } from '../ui.js';
import { Chart, groupCharts } from '../charts.js';

const REFRESH_MS = 10000;

export function mount(root) {
  const charts = new Map(); // chart name -> Chart
  const grid = h('div', { id: 'charts', class: 'charts' });
  const status = h('p', { class: 'muted', text: 'Loading…' });
  root.append(h('section', { class: 'panel' },
    h('div', { class: 'toolbar' }, h('h1', { text: 'Metrics' }), status),
    grid));

  let destroyed = false;
  let timer = 0;

  async function refresh() {
    clearTimeout(timer);
    try {
      const data = await api('/v1/metrics/history');
      if (destroyed) return;
      render(data || {});
      status.textContent = 'Updated ' + new Date().toLocaleTimeString() +
        (data && data.interval_seconds ? ` · one point per ${data.interval_seconds} s` : '') +
        (data && data.processes > 1 ? ` · ${data.processes} processes` : '');
    } catch (err) {
      if (destroyed) return;
      status.textContent = 'Could not load metrics.';
      if (err.status !== 401) notice(errorMessage(err));
    }
    if (!destroyed) timer = setTimeout(refresh, REFRESH_MS);
  }

  /** render adds charts seen for the first time and updates them all. */
  function render(data) {
    const groups = groupCharts(data.series);
    for (const [name, series] of groups) {
      let chart = charts.get(name);
      if (!chart) {
        chart = new Chart(name);
        charts.set(name, chart);
        grid.append(chart.el);
      }
      chart.update(series);
    }
    if (!groups.size && !grid.firstChild) grid.append(h('p', { class: 'muted', text: 'No metrics yet.' }));
  }

  // Redraw at the new size when the layout changes.
  const resize = new ResizeObserver(() => { for (const c of charts.values()) c.draw(); });
  resize.observe(grid);
  const mq = matchMedia('(prefers-color-scheme: dark)');
  const recolour = () => { for (const c of charts.values()) c.draw(); };
  mq.addEventListener('change', recolour);

  refresh();
  return {
    destroy() {
      destroyed = true;
      clearTimeout(timer);
      resize.disconnect();
      mq.removeEventListener('change', recolour);
    },
  };
}
