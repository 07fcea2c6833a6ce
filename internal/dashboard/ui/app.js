// Sluice dashboard: start-up, sign-in state, header, hash router, and the
// wiring between the live-update stream and the page on screen.
//
// Pages are modules under pages/ exporting mount(root, route) which returns
// an object with optional destroy(), onUpdate(update) and onReconnect().

import { api, getKey, forgetKey, onUnauthorized } from './api.js';
import * as live from './live.js';
import { h, clearNotice, notice, errorMessage } from './ui.js';
import * as signInPage from './pages/signin.js';
import * as assetsPage from './pages/assets.js';
import * as assetPage from './pages/asset.js';
import * as queuePage from './pages/queue.js';
import * as metricsPage from './pages/metrics.js';

const session = {
  ready: false,     // true once we know who we are
  keyId: '',        // key_id from /v1/usage ("dev" in dev mode)
  dev: false,       // the server accepted us without a key
};

let current = null;     // the mounted page object
let signInMessage = ''; // shown once on the sign-in page (e.g. after a 401)

// ---- routing ----

/**
 * parseRoute splits location.hash ("#/assets/ID?q=x") into
 * {name, path, parts, params}.
 */
export function parseRoute(hash = location.hash) {
  const raw = hash.replace(/^#/, '');
  const [pathPart, queryPart = ''] = raw.split('?');
  const parts = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] || '', path: pathPart, parts, params: new URLSearchParams(queryPart) };
}

/** pageFor picks the page module for a route, or null. */
function pageFor(route) {
  switch (route.name) {
    case 'sign-in': return signInPage;
    case 'assets': return route.parts.length > 1 ? assetPage : assetsPage;
    case 'queue': return queuePage;
    case 'metrics': return metricsPage;
    default: return null;
  }
}

/** render mounts the page for the current hash. */
function render() {
  const route = parseRoute();
  if (!route.name) {
    location.replace('#/assets');
    return;
  }
  const signedIn = Boolean(session.keyId);
  if (!signedIn && route.name !== 'sign-in') {
    location.replace('#/sign-in');
    return;
  }
  unmount();
  clearNotice();
  markNav(route.name);
  const main = document.getElementById('main');
  main.replaceChildren();
  const page = pageFor(route);
  if (!page) {
    main.append(h('section', { class: 'panel' }, h('h1', { text: 'Not found' }),
      h('p', {}, 'No page here. ', h('a', { href: '#/assets', text: 'Go to assets' }))));
    return;
  }
  document.title = titleFor(route) + ' · Sluice';
  const ctx = { route, session, signIn, takeSignInMessage };
  try {
    current = page.mount(main, ctx) || {};
  } catch (err) {
    console.error(err);
    notice(errorMessage(err));
  }
}

function titleFor(route) {
  switch (route.name) {
    case 'sign-in': return 'Sign in';
    case 'assets': return route.parts.length > 1 ? 'Asset' : 'Assets';
    case 'queue': return 'Queue';
    case 'metrics': return 'Metrics';
    default: return 'Not found';
  }
}

function unmount() {
  if (current && current.destroy) {
    try { current.destroy(); } catch (err) { console.error(err); }
  }
  current = null;
}

/** markNav highlights the header link of the page on screen. */
function markNav(name) {
  for (const a of document.querySelectorAll('[data-nav]')) {
    const on = a.dataset.nav === name;
    a.classList.toggle('active', on);
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// ---- session ----

/** showSession fills the header's whoami and sign-out. */
function showSession() {
  const who = document.querySelector('[data-testid="whoami"]');
  who.textContent = session.keyId;
  who.title = session.dev ? 'dev mode: no key needed from this machine' : 'signed in with this key';
  document.getElementById('sign-out').hidden = !session.keyId;
  document.body.classList.toggle('signed-in', Boolean(session.keyId));
}

/**
 * signIn is called by the sign-in page once the key checked out (the page
 * already stored it); it starts the live stream and opens the assets page.
 */
function signIn(usage) {
  session.keyId = (usage && usage.key_id) || 'key';
  session.dev = false;
  showSession();
  live.stop();
  live.start();
  location.hash = '#/assets';
}

/** signOut forgets the key and returns to the sign-in page. */
function signOut(message) {
  forgetKey();
  session.keyId = '';
  session.dev = false;
  live.stop();
  showSession();
  signInMessage = message || '';
  if (parseRoute().name === 'sign-in') render();
  else location.hash = '#/sign-in';
}

/** takeSignInMessage returns (once) why the user was sent to sign in. */
function takeSignInMessage() {
  const m = signInMessage;
  signInMessage = '';
  return m;
}

/**
 * whoAmI works out the session at start-up: the stored key if it is
 * accepted, else no key at all (the server's --dev mode on loopback).
 */
async function whoAmI() {
  const key = getKey();
  if (key) {
    try {
      const usage = await api('/v1/usage', { noRedirect: true });
      return { keyId: usage.key_id || 'key', dev: false };
    } catch (err) {
      if (err.status === 401) {
        forgetKey();
        signInMessage = 'Your stored key was not accepted; sign in again.';
      } else {
        throw err;
      }
    }
  }
  try {
    const usage = await api('/v1/usage', { key: '', noRedirect: true });
    return { keyId: (usage && usage.key_id) || 'dev', dev: true };
  } catch (err) {
    if (err.status === 401 || err.status === 403 || err.status === 0) {
      if (err.status === 0) throw err;
      return { keyId: '', dev: false };
    }
    // Accepted without a key but no usage to report (an older --dev
    // server answers 400 here): check that the API itself lets us in.
    await api('/v1/assets?limit=1', { key: '', noRedirect: true });
    return { keyId: 'dev', dev: true };
  }
}

// ---- start-up ----

async function boot() {
  document.getElementById('sign-out').addEventListener('click', () => signOut(''));
  onUnauthorized((message) => {
    if (!session.keyId && parseRoute().name === 'sign-in') return;
    signOut('Signed out: ' + (message || 'the key was not accepted') + '. Sign in again.');
  });
  const liveEl = document.getElementById('live');
  live.onState((connected, reconnected) => {
    liveEl.textContent = connected ? 'live' : 'offline';
    liveEl.classList.toggle('online', connected);
    liveEl.classList.toggle('offline', !connected);
    if (reconnected && current && current.onReconnect) current.onReconnect();
  });
  live.onUpdate((u) => {
    if (current && current.onUpdate) current.onUpdate(u);
  });
  window.addEventListener('hashchange', render);

  try {
    const who = await whoAmI();
    session.keyId = who.keyId;
    session.dev = who.dev;
  } catch (err) {
    notice('Cannot check the key: ' + errorMessage(err));
  }
  session.ready = true;
  showSession();
  if (session.keyId) live.start();
  render();
}

boot();
