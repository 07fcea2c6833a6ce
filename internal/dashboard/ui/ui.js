// Small DOM and formatting helpers shared by every page.
// Everything that shows server data goes through textContent, never innerHTML.

/**
 * h(tag, props, ...children) builds an element.
 * props: "class" / "className", "dataset" (object), "on" (object of event
 * handlers), "text" (textContent); other keys become properties when the
 * element has such a property, attributes otherwise. Children may be nodes,
 * strings (added as text), arrays, or null/false (skipped).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class' || key === 'className') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'on') {
      for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    } else if (key === 'text') el.textContent = String(value);
    else if (key.startsWith('aria-') || key === 'role' || key.startsWith('data-')) el.setAttribute(key, value === true ? '' : String(value));
    else if (key in el) el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** append adds children (nodes, strings, nested arrays) to el. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** clear removes every child of el. */
export function clear(el) {
  el.replaceChildren();
  return el;
}

// ---- notice area (#notice, role=alert) ----

let noticeTimer = 0;
let noticeWired = false;

/**
 * notice shows a message in #notice. kind: "error" (stays until clicked or
 * the next route) or "info" (fades after a while). The element holds only
 * the message text; clicking it dismisses it.
 */
export function notice(message, kind = 'error') {
  const box = document.getElementById('notice');
  if (!box) return;
  if (!noticeWired) {
    noticeWired = true;
    box.title = 'Click to dismiss';
    box.addEventListener('click', clearNotice);
  }
  clearTimeout(noticeTimer);
  box.className = 'notice ' + kind;
  box.textContent = message;
  box.hidden = false;
  if (kind !== 'error') noticeTimer = setTimeout(clearNotice, 8000);
}

/** clearNotice hides #notice. */
export function clearNotice() {
  const box = document.getElementById('notice');
  if (!box) return;
  clearTimeout(noticeTimer);
  box.hidden = true;
  box.replaceChildren();
}

/** errorMessage turns anything thrown into a line for the user. */
export function errorMessage(err) {
  if (!err) return 'unknown error';
  if (err.message) return err.message;
  return String(err);
}

// ---- formatting ----

/** humanSize formats a byte count: 1536 -> "1.5 KiB". */
export function humanSize(bytes) {
  if (bytes === undefined || bytes === null || isNaN(bytes)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = Number(bytes);
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
}

/** relativeTime formats a timestamp relative to now: "3 min ago". */
export function relativeTime(when) {
  if (!when) return '—';
  const t = new Date(when).getTime();
  if (isNaN(t)) return '—';
  const s = Math.round((Date.now() - t) / 1000);
  const abs = Math.abs(s);
  const suffix = s >= 0 ? ' ago' : ' from now';
  if (abs < 45) return 'just now';
  if (abs < 3600) return Math.round(abs / 60) + ' min' + suffix;
  if (abs < 86400) return Math.round(abs / 3600) + ' h' + suffix;
  if (abs < 86400 * 30) return Math.round(abs / 86400) + ' d' + suffix;
  return new Date(t).toLocaleDateString();
}

/** absoluteTime formats a timestamp for a title/tooltip. */
export function absoluteTime(when) {
  if (!when) return '';
  const d = new Date(when);
  return isNaN(d.getTime()) ? '' : d.toLocaleString();
}

/** clock formats seconds as m:ss (or h:mm:ss). */
export function clock(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds) || 0));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** duration formats milliseconds: 850 -> "850 ms", 12500 -> "12.5 s". */
export function duration(ms) {
  if (ms === undefined || ms === null || isNaN(ms)) return '—';
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
  const m = Math.floor(ms / 60000);
  return m + ' min ' + Math.round((ms % 60000) / 1000) + ' s';
}

/** percent formats a 0..1 ratio as "42%". */
export function percent(ratio, digits = 0) {
  if (ratio === undefined || ratio === null || isNaN(ratio)) return '—';
  return (Number(ratio) * 100).toFixed(digits) + '%';
}

/** debounce delays fn until calls have stopped for ms. */
export function debounce(fn, ms) {
  let timer = 0;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/** statusBadge makes a status pill; its text is exactly the status. */
export function statusBadge(status, props = {}) {
  return h('span', { class: 'status status-' + safeToken(status), ...props, text: status || 'unknown' });
}

/** safeToken keeps only characters safe in a class name. */
export function safeToken(s) {
  return String(s || '').replace(/[^a-z0-9_-]/gi, '');
}

/** sleep resolves after ms. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * sizeCanvas makes a canvas's backing store match its CSS size times
 * devicePixelRatio, and returns a 2D context scaled to CSS pixels plus the
 * CSS width/height.
 */
export function sizeCanvas(canvas, cssHeight) {
  const dpr = window.devicePixelRatio || 1;
  const width = Math.max(1, canvas.clientWidth || canvas.parentElement?.clientWidth || 300);
  const height = cssHeight || Math.max(1, canvas.clientHeight || 150);
  const w = Math.round(width * dpr);
  const hh = Math.round(height * dpr);
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== hh) canvas.height = hh;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, width, height };
}

/** cssVar reads a CSS custom property from the root (for canvas colours). */
export function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

/** fill replaces el's children with the given ones (null/false skipped). */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}
