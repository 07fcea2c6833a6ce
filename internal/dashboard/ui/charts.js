// Hand-drawn line charts on <canvas> for the metrics page: axes, grid, one
// line per series, a legend with last values, and a hover tooltip.

import { h, sizeCanvas, cssVar } from './ui.js';

const PALETTE = ['#2f6fde', '#e0782f', '#2e9d62', '#c8408f', '#7b5ad6', '#b39a22', '#1c9bb0', '#d24a4a'];
const HEIGHT = 220;
const PAD = { top: 12, right: 14, bottom: 26, left: 56 };

/** formatValue shows a value in its unit. */
export function formatValue(v, unit) {
  if (v === null || v === undefined || isNaN(v)) return '—';
  switch (unit) {
    case 'ratio': return (v * 100).toFixed(v < 0.1 && v > 0 ? 1 : 0) + '%';
    case 'seconds':
      if (v === 0) return '0 s';
      if (Math.abs(v) < 1) return Math.round(v * 1000) + ' ms';
      return (Math.abs(v) < 10 ? v.toFixed(2) : v.toFixed(1)) + ' s';
    case 'per_min': return trim(v) + '/min';
    case 'count': return Number.isInteger(v) ? String(v) : trim(v);
    default: return trim(v);
  }
}

function trim(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(0) + 'k';
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return String(Math.round(v * 100) / 100);
}

/** niceMax rounds a maximum up to 1, 2, 2.5 or 5 × 10^n. */
function niceMax(v, unit) {
  if (unit === 'ratio') return v <= 0 ? 1 : Math.min(1, niceMax(v, ''));
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** timeLabel formats a unix-ms time as HH:MM (HH:MM:SS for short ranges). */
function timeLabel(ms, span) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  const hm = p(d.getHours()) + ':' + p(d.getMinutes());
  return span < 10 * 60e3 ? hm + ':' + p(d.getSeconds()) : hm;
}

/**
 * Chart owns one <figure class="chart" data-chart=NAME> with a canvas, a
 * legend and a tooltip. update(series) redraws it with new data.
 */
export class Chart {
  constructor(name) {
    this.name = name;
    this.series = [];
    this.hoverX = null;
    this.canvas = h('canvas', { class: 'chart-canvas', role: 'img', 'aria-label': name + ' chart' });
    this.tooltip = h('div', { class: 'chart-tooltip', hidden: true, role: 'status' });
    this.legend = h('ul', { class: 'chart-legend' });
    this.el = h('figure', { class: 'chart', dataset: { chart: name } },
      h('figcaption', { class: 'chart-title', text: name }),
      h('div', { class: 'chart-body' }, this.canvas, this.tooltip),
      this.legend);
    this.canvas.style.height = HEIGHT + 'px';
    this.canvas.addEventListener('pointermove', (e) => this.hover(e));
    this.canvas.addEventListener('pointerleave', () => { this.hoverX = null; this.tooltip.hidden = true; this.draw(); });
  }

  /** update takes the chart's series ({name,label,unit,points}) and redraws. */
  update(series) {
    this.series = series;
    this.unit = (series[0] && series[0].unit) || '';
    this.renderLegend();
    this.draw();
  }

  renderLegend() {
    this.legend.replaceChildren(...this.series.map((s, i) => {
      const last = lastValue(s.points);
      const swatch = h('span', { class: 'swatch', 'aria-hidden': 'true' });
      swatch.style.background = PALETTE[i % PALETTE.length];
      return h('li', { dataset: { series: s.name } }, swatch,
        h('span', { class: 'legend-label', text: s.label || s.name }),
        h('span', { class: 'legend-value', text: formatValue(last, s.unit) }));
    }));
  }

  /** bounds: the time range and the value maximum across all series. */
  bounds() {
    let t0 = Infinity, t1 = -Infinity, vmax = 0;
    for (const s of this.series) {
      for (const [t, v] of s.points || []) {
        if (t < t0) t0 = t;
        if (t > t1) t1 = t;
        if (v !== null && v > vmax) vmax = v;
      }
    }
    if (!isFinite(t0)) { t1 = Date.now(); t0 = t1 - 3600e3; }
    if (t1 === t0) t0 = t1 - 60e3;
    return { t0, t1, vmax: niceMax(vmax, this.unit) };
  }

  draw() {
    if (!this.canvas.isConnected) return;
    const { ctx, width, height } = sizeCanvas(this.canvas, HEIGHT);
    const fg = cssVar('--muted', '#666');
    const grid = cssVar('--grid', '#e5e5e5');
    ctx.clearRect(0, 0, width, height);
    const plot = { x: PAD.left, y: PAD.top, w: Math.max(10, width - PAD.left - PAD.right), h: height - PAD.top - PAD.bottom };
    const b = this.bounds();
    const X = (t) => plot.x + ((t - b.t0) / (b.t1 - b.t0)) * plot.w;
    const Y = (v) => plot.y + plot.h - (v / b.vmax) * plot.h;
    this.geom = { plot, b, X };

    // Grid and y labels.
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = fg;
    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const v = (b.vmax * i) / 4;
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(plot.x, y); ctx.lineTo(plot.x + plot.w, y); ctx.stroke();
      ctx.fillText(formatValue(v, this.unit), plot.x - 6, y);
    }
    // X labels: about one per 100 px.
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const ticks = Math.max(2, Math.floor(plot.w / 110));
    for (let i = 0; i <= ticks; i++) {
      const t = b.t0 + ((b.t1 - b.t0) * i) / ticks;
      ctx.fillText(timeLabel(t, b.t1 - b.t0), X(t), plot.y + plot.h + 6);
    }
    // Axes.
    ctx.strokeStyle = fg;
    ctx.beginPath();
    ctx.moveTo(plot.x + 0.5, plot.y); ctx.lineTo(plot.x + 0.5, plot.y + plot.h + 0.5); ctx.lineTo(plot.x + plot.w, plot.y + plot.h + 0.5);
    ctx.stroke();

    // Lines; null breaks a line, a lone point becomes a dot.
    this.series.forEach((s, i) => {
      ctx.strokeStyle = ctx.fillStyle = PALETTE[i % PALETTE.length];
      ctx.lineWidth = 1.8;
      ctx.beginPath();
      let drawing = false;
      const pts = s.points || [];
      pts.forEach(([t, v], k) => {
        if (v === null || v === undefined) { drawing = false; return; }
        const x = X(t), y = Y(Math.min(v, b.vmax));
        if (!drawing) {
          ctx.moveTo(x, y);
          const prev = pts[k - 1], next = pts[k + 1];
          if ((!prev || prev[1] === null) && (!next || next[1] === null)) ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
        } else ctx.lineTo(x, y);
        drawing = true;
      });
      ctx.stroke();
    });

    if (this.series.every((s) => !(s.points || []).some((p) => p[1] !== null))) {
      ctx.fillStyle = fg;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText('no data yet', plot.x + plot.w / 2, plot.y + plot.h / 2);
    }

    // Hover line.
    if (this.hoverX !== null) {
      ctx.strokeStyle = fg;
      ctx.lineWidth = 1;
      ctx.setLineDash([3, 3]);
      ctx.beginPath(); ctx.moveTo(this.hoverX, plot.y); ctx.lineTo(this.hoverX, plot.y + plot.h); ctx.stroke();
      ctx.setLineDash([]);
    }
  }

  /** hover shows the values nearest to the pointer's time. */
  hover(e) {
    if (!this.geom) return;
    const rect = this.canvas.getBoundingClientRect();
    const x = e.clientX - rect.left;
    const { plot, b } = this.geom;
    if (x < plot.x || x > plot.x + plot.w) {
      this.hoverX = null; this.tooltip.hidden = true; this.draw();
      return;
    }
    const t = b.t0 + ((x - plot.x) / plot.w) * (b.t1 - b.t0);
    let nearestT = null;
    const rows = this.series.map((s, i) => {
      const p = nearest(s.points || [], t);
      if (p && (nearestT === null || Math.abs(p[0] - t) < Math.abs(nearestT - t))) nearestT = p[0];
      const swatch = h('span', { class: 'swatch', 'aria-hidden': 'true' });
      swatch.style.background = PALETTE[i % PALETTE.length];
      return h('div', { class: 'tip-row' }, swatch, (s.label || s.name) + ': ', h('strong', { text: formatValue(p ? p[1] : null, s.unit) }));
    });
    this.hoverX = this.geom.X(nearestT === null ? t : nearestT);
    this.tooltip.replaceChildren(h('div', { class: 'tip-time', text: new Date(nearestT === null ? t : nearestT).toLocaleTimeString() }), ...rows);
    this.tooltip.hidden = false;
    const left = Math.min(Math.max(0, this.hoverX + 12), rect.width - this.tooltip.offsetWidth - 4);
    this.tooltip.style.left = (this.hoverX + 12 + this.tooltip.offsetWidth > rect.width ? this.hoverX - this.tooltip.offsetWidth - 12 : left) + 'px';
    this.tooltip.style.top = Math.max(0, e.clientY - rect.top - 20) + 'px';
    this.draw();
  }
}

/** nearest finds the point closest in time to t. */
function nearest(points, t) {
  let best = null;
  for (const p of points) if (!best || Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p;
  return best;
}

/** lastValue is the latest non-null value of a series. */
export function lastValue(points) {
  for (let i = (points || []).length - 1; i >= 0; i--) if (points[i][1] !== null && points[i][1] !== undefined) return points[i][1];
  return null;
}

/** groupCharts groups series by their "chart", in order of first appearance. */
export function groupCharts(series) {
  const charts = new Map();
  for (const s of series || []) {
    const name = s.chart || s.name;
    if (!charts.has(name)) charts.set(name, []);
    charts.get(name).push(s);
  }
  return charts;
}
