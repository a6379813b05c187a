// The dashboard's shell: who is logged in, the live stream and its banner, the hash router.
import { html } from 'htm/preact';
import { render } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, request } from './api.js';
import { FleetState } from './fleet_state.js';
import { FleetStream } from './stream.js';
import { DeploymentPage, DeploymentsPage } from './views/deployments.js';
import { InventoryPage } from './views/inventory.js';
import { Login } from './views/login.js';
import { Overview } from './views/overview.js';
import { RobotPage } from './views/robot.js';
import './style.css';

// Routes: pattern -> page (and a link in the header).
const ROUTES = [
  { pattern: /^\/deployments\/([^/]+)$/, page: ({ match, ...props }) =>
    html`<${DeploymentPage} ...${props} deploymentId=${decodeURIComponent(match[1])} />` },
  { pattern: /^\/deployments$/, page: (props) => html`<${DeploymentsPage} ...${props} />` },
  { pattern: /^\/inventory$/, page: (props) => html`<${InventoryPage} ...${props} />` },
  { pattern: /^\/robots\/([^/]+)$/, page: ({ match, ...props }) =>
    html`<${RobotPage} ...${props} robotId=${decodeURIComponent(match[1])} />` },
  { pattern: /^\/?$/, page: (props) => html`<${Overview} ...${props} />` },
];

function useHashPath() {
  const read = () => location.hash.replace(/^#/, '') || '/';
  const [path, setPath] = useState(read());
  useEffect(() => {
    const onChange = () => setPath(read());
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return path;
}

function Banner({ status }) {
  if (status.name === 'live') return null;
  const text = {
    connecting: 'Connecting to the fleet server…',
    reconnecting: 'Reconnecting…',
    disconnected: `Connection lost (${status.detail?.reason || 'closed'}); retrying in ${
      Math.ceil((status.detail?.retryInMs || 0) / 1000)} s. Data shown may be out of date.`,
    unauthorized: 'The session ended: log in again.',
    error: 'The stream reported an error.',
  }[status.name] || status.name;
  return html`<div class=${`banner banner-${status.name}`} id="connection-banner"
    role="status">${text}</div>`;
}

// Flag guards that tripped (issue 20): the flags the server's guards changed, from the flags'
// state at load and live from the stream's `flag` updates, until the operator dismisses them.
function GuardBanner({ stream }) {
  const [trips, setTrips] = useState([]);
  useEffect(() => {
    let cancelled = false;
    request('GET', '/api/v1/flags').then((flags) => {
      const tripped = (flags || []).filter((f) => f.updated_by === 'guard')
        .map((f) => ({ flag: f.name, summary: `a guard changed it (now ${f.percentage} %)` }));
      if (!cancelled && tripped.length) setTrips((t) => [...t, ...tripped]);
    }, () => {});
    const off = stream.onUpdate('flag', (u) => {
      if (u.event !== 'FlagGuardTripped') return;
      setTrips((t) => [...t.filter((x) => x.flag !== u.flag), u].slice(-5));
    });
    return () => { cancelled = true; off(); };
  }, [stream]);
  if (!trips.length) return null;
  return html`<div class="banner banner-guard" id="guard-banner" role="alert">
    <b>Flag guard tripped</b>
    <ul>${trips.map((t) => html`<li data-flag=${t.flag}>${t.flag}: ${t.summary}</li>`)}</ul>
    <button onClick=${() => setTrips([])} id="guard-banner-dismiss">Dismiss</button></div>`;
}

function Dashboard({ me, onLogout }) {
  const state = useMemo(() => new FleetState(), []);
  const [status, setStatus] = useState({ name: 'connecting' });
  const stream = useMemo(() => new FleetStream(state, {
    onStatus: (name, detail) => setStatus({ name, detail }),
  }), [state]);
  useEffect(() => {
    stream.start();
    window.__lekiwi = { state, stream }; // for the browser test and the benchmark
    return () => stream.stop();
  }, [stream]);
  useEffect(() => { if (status.name === 'unauthorized') onLogout(); }, [status.name]);
  const path = useHashPath();
  let page = html`<p>Not found: ${path}</p>`;
  for (const route of ROUTES) {
    const match = path.match(route.pattern);
    if (match) {
      page = route.page({ match, state, stream, me });
      break;
    }
  }
  const logout = async () => {
    try { await api.logout(); } finally { onLogout(); }
  };
  return html`
    <header>
      <a href="#/" class="brand">LeKiwi Fleet</a>
      <nav><a href="#/">Fleet</a> <a href="#/deployments" id="nav-deployments">Deployments</a>
        <a href="#/inventory" id="nav-inventory">Inventory</a></nav>
      <span class=${`live-dot ${status.name}`} id="live-status" data-status=${status.name}>
        ${status.name === 'live' ? 'live' : status.name}</span>
      <span class="who" id="who">${me.name} (${me.role})</span>
      <button onClick=${logout} id="logout">Log out</button>
    </header>
    <${Banner} status=${status} />
    <${GuardBanner} stream=${stream} />
    <main>${page}</main>`;
}

function App() {
  const [me, setMe] = useState(undefined);
  useEffect(() => {
    api.me().then(setMe, () => setMe(null));
  }, []);
  if (me === undefined) return html`<p class="loading">Loading…</p>`;
  if (me === null) return html`<${Login} onLoggedIn=${(m) => setMe(m)} />`;
  return html`<${Dashboard} me=${me} onLogout=${() => setMe(null)} />`;
}

render(html`<${App} />`, document.getElementById('app'));
