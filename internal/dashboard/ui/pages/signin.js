// Sign-in page (#/sign-in): checks an API key with GET /v1/usage and stores
// it in sessionStorage (or localStorage with "remember on this device").

import { api, setKey } from '../api.js';
import { h, errorMessage } from '../ui.js';

export function mount(root, ctx) {
  const input = h('input', { id: 'api-key', type: 'password', autocomplete: 'off', spellcheck: false, required: true, 'aria-describedby': 'sign-in-error' });
  const remember = h('input', { id: 'remember', type: 'checkbox' });
  const button = h('button', { id: 'sign-in', type: 'submit', class: 'primary', text: 'Sign in' });
  const error = h('p', { id: 'sign-in-error', class: 'form-error', 'aria-live': 'polite' });
  const initial = ctx.takeSignInMessage();
  error.textContent = initial;

  // A <form> only for Enter-to-submit; the CSP forbids form actions, so the
  // submit event is always cancelled.
  const form = h('form', { class: 'sign-in-form', novalidate: true },
    h('h1', { text: 'Sign in' }),
    h('p', { class: 'muted', text: 'Paste a Sluice API key. It stays in this browser and is sent only to this server.' }),
    h('label', { htmlFor: 'api-key', text: 'API key' }),
    input,
    h('label', { class: 'check' }, remember, ' Remember on this device'),
    button,
    error,
    ctx.session.keyId
      ? h('p', { class: 'muted' }, 'Already signed in as ', h('strong', { text: ctx.session.keyId }), '. ', h('a', { href: '#/assets', text: 'Back to assets' }))
      : null,
  );

  let busy = false;
  async function submit(event) {
    event.preventDefault();
    if (busy) return;
    const key = input.value.trim();
    if (!key) {
      error.textContent = 'Enter an API key.';
      input.focus();
      return;
    }
    busy = true;
    button.disabled = true;
    error.textContent = '';
    try {
      const usage = await api('/v1/usage', { key, noRedirect: true });
      setKey(key, remember.checked);
      input.value = '';
      ctx.signIn(usage || {});
    } catch (err) {
      error.textContent = err.status === 401 ? 'invalid key' : errorMessage(err);
      input.select();
    } finally {
      busy = false;
      button.disabled = false;
    }
  }
  form.addEventListener('submit', submit);

  root.append(h('section', { class: 'sign-in panel' }, form));
  input.focus();
  return {
    destroy() { input.value = ''; },
  };
}
