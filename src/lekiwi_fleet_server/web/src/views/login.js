import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api } from '../api.js';

export function Login({ onLoggedIn }) {
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onLoggedIn(await api.login(name, password));
    } catch (err) {
      setError(err.status === 429 ? `Too many failed logins: ${err.message}` : err.message);
    } finally {
      setBusy(false);
    }
  };

  return html`
    <form class="login" onSubmit=${submit} id="login-form">
      <h1>LeKiwi Fleet</h1>
      <label>Account <input name="name" autocomplete="username" value=${name}
        onInput=${(e) => setName(e.target.value)} required /></label>
      <label>Password <input name="password" type="password" autocomplete="current-password"
        value=${password} onInput=${(e) => setPassword(e.target.value)} required /></label>
      <button type="submit" disabled=${busy}>Log in</button>
      ${error && html`<p class="error" role="alert">${error}</p>`}
    </form>`;
}
