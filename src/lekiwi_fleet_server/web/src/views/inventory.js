// The discovery inventory: every robot found, however found (mDNS, scans, uplinks, ROS), with
// its enrolment, the sources that saw it and its presence; and a robot's part of it for the
// robot page. Read from the inventory REST API, again every 5 s.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api.js';
import { age, time } from '../format.js';

export function useInventory(params, intervalMs = 5000) {
  const [entries, setEntries] = useState(null);
  const [error, setError] = useState(null);
  const key = JSON.stringify(params);
  useEffect(() => {
    let cancelled = false;
    const load = async () => {
      try {
        const found = await api.inventory(params);
        if (!cancelled) { setEntries(found); setError(null); }
      } catch (err) {
        if (!cancelled) setError(err.message);
      }
    };
    load();
    const id = setInterval(load, intervalMs);
    return () => { cancelled = true; clearInterval(id); };
  }, [key]);
  return [entries, error];
}

function Sources({ sources }) {
  return Object.entries(sources || {}).map(([name, s]) => html`<span class="chip"
    data-source=${name} title=${`${s.address || ''}${s.port ? `:${s.port}` : ''}`}>
    ${name}</span>`);
}

export function InventoryPage() {
  const [enrolled, setEnrolled] = useState('');
  const params = enrolled === '' ? {} : { enrolled };
  const [entries, error] = useInventory(params);
  const now = Date.now() / 1000;
  return html`
    <div class="inventory-page" id="inventory-page">
      <h2>Inventory</h2>
      <section class="filters">
        <select value=${enrolled} onChange=${(e) => setEnrolled(e.target.value)}
          id="filter-enrolled">
          <option value="">discovered and enrolled</option>
          <option value="true">enrolled</option><option value="false">not enrolled</option>
        </select>
        <span class="count">${entries ? entries.length : '…'} found</span>
      </section>
      ${error && html`<p class="error">${error}</p>`}
      <table class="list" id="inventory">
        <tr><th>Robot</th><th>Enrolled</th><th>Address</th><th>Sources</th><th>Presence</th>
          <th>Software</th><th>First seen</th><th>Last seen</th></tr>
        ${(entries || []).map((e) => html`<tr data-key=${e.key}
            data-enrolled=${e.enrolled ? 'yes' : 'no'}>
          <td>${e.robot_id ? html`<a href=${`#/robots/${encodeURIComponent(e.robot_id)}`}>
            ${e.robot_id}</a>` : html`<i>${e.key}</i>`}</td>
          <td>${e.enrolled ? 'yes' : 'no'}</td><td>${e.address || '—'}</td>
          <td><${Sources} sources=${e.sources} /></td>
          <td>${e.presence ? html`${e.presence.state}
            <small title=${e.presence.reason}> since ${age(now - e.presence.since)}</small>`
            : '—'}</td>
          <td>${e.software_version || '—'}</td><td>${time(e.first_seen)}</td>
          <td>${age(e.last_seen ? now - e.last_seen : null)}</td></tr>`)}
      </table>
    </div>`;
}

// The robot page's "Discovery sources": which sources found it, where and when.
export function DiscoverySources({ robotId }) {
  const [entries, error] = useInventory({}, 10000);
  const entry = (entries || []).find((e) => e.robot_id === robotId);
  const now = Date.now() / 1000;
  return html`
    <section>
      <h3>Discovery sources</h3>
      ${error && html`<p class="error">${error}</p>`}
      ${entries && !entry && html`<p>Not in the discovery inventory.</p>`}
      ${entry && html`<table class="list" id="discovery-sources">
        <tr><th>Source</th><th>Address</th><th>Last seen</th></tr>
        ${Object.entries(entry.sources || {}).map(([name, s]) => html`<tr data-source=${name}>
          <td>${name}</td><td>${s.address || '—'}${s.port ? `:${s.port}` : ''}</td>
          <td>${age(s.last_seen ? now - s.last_seen : null)}</td></tr>`)}
      </table>
      ${entry.presence && html`<p>Presence: ${entry.presence.state} (${entry.presence.reason})</p>`}`}
    </section>`;
}
