// The discovery inventory: every robot found, however found (uplink, mDNS, scans, rosbridge),
// with its enrolment, the sources that saw it and its presence; and a robot's part of it for the
// robot page. Live from /api/v1/stream/inventory: a snapshot, then each change.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { age, time } from '../format.js';
import { FleetStream } from '../stream.js';

const INVENTORY_URL = () =>
  `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/stream/inventory`;

// Entries by key, kept current by the inventory stream while the component is shown.
export function useInventory() {
  const [entries, setEntries] = useState(null);
  const [status, setStatus] = useState('connecting');
  useEffect(() => {
    let held = new Map();
    const stream = new FleetStream(null, { url: INVENTORY_URL(), onStatus: setStatus });
    stream.onUpdate('inventory_snapshot', (u) => {
      held = new Map(u.entries.map((e) => [e.key, e]));
      setEntries(held);
    });
    stream.onUpdate('inventory', (u) => {
      held = new Map(held);
      for (const { key, entry } of u.entries) {
        if (entry === null) held.delete(key);
        else held.set(key, entry);
      }
      setEntries(held);
    });
    stream.start();
    return () => stream.stop();
  }, []);
  return [entries, status];
}

function Sources({ sources }) {
  return Object.entries(sources || {}).map(([name, s]) => html`<span class="chip"
    data-source=${name} title=${`${s.address || ''}${s.port ? `:${s.port}` : ''}`}>
    ${name}</span>`);
}

export function InventoryPage() {
  const [enrolled, setEnrolled] = useState('');
  const [entries, status] = useInventory();
  const shown = [...(entries || new Map()).values()].filter((e) =>
    enrolled === '' || String(e.enrolled) === enrolled);
  const now = Date.now() / 1000;
  return html`
    <div class="inventory-page" id="inventory-page" data-status=${status}>
      <h2>Inventory</h2>
      <section class="filters">
        <select value=${enrolled} onChange=${(e) => setEnrolled(e.target.value)}
          id="filter-enrolled">
          <option value="">discovered and enrolled</option>
          <option value="true">enrolled</option><option value="false">not enrolled</option>
        </select>
        ${status !== 'live' && html`<span class="error">inventory stream: ${status}</span>`}
        <span class="count">${entries ? shown.length : '…'} found</span>
      </section>
      <table class="list" id="inventory">
        <tr><th>Robot</th><th>Enrolled</th><th>Address</th><th>Sources</th><th>Presence</th>
          <th>Software</th><th>First seen</th><th>Last seen</th></tr>
        ${shown.map((e) => html`<tr data-key=${e.key} data-enrolled=${e.enrolled ? 'yes' : 'no'}
            data-presence=${e.presence?.state || 'unknown'}>
          <td>${e.robot_id ? html`<a href=${`#/robots/${encodeURIComponent(e.robot_id)}`}>
            ${e.robot_id}</a>` : html`<i>${e.key}</i>`}</td>
          <td>${e.status}</td><td>${e.address || '—'}</td>
          <td><${Sources} sources=${e.sources} /></td>
          <td>${e.presence ? html`${e.presence.state}
            <small title=${e.presence.reason}> since ${age(now - e.presence.since)}</small>`
            : '—'}</td>
          <td>${e.software_version || '—'}</td><td>${time(e.first_seen)}</td>
          <td>${age(e.last_seen ? now - e.last_seen : null)}</td></tr>`)}
      </table>
      ${entries && shown.length === 0 && html`<p>Nothing found.</p>`}
    </div>`;
}

// The robot page's "Discovery sources": which sources found it, where and when.
export function DiscoverySources({ robotId }) {
  const [entries] = useInventory();
  const entry = entries && [...entries.values()].find((e) => e.robot_id === robotId);
  const now = Date.now() / 1000;
  return html`
    <section>
      <h3>Discovery sources</h3>
      ${entries && !entry && html`<p>Not in the discovery inventory (not seen by any source
        now).</p>`}
      ${entry && html`<table class="list" id="discovery-sources">
        <tr><th>Source</th><th>Address</th><th>Last seen</th></tr>
        ${Object.entries(entry.sources || {}).map(([name, s]) => html`<tr data-source=${name}>
          <td>${name}</td><td>${s.address || '—'}${s.port ? `:${s.port}` : ''}</td>
          <td>${age(s.last_seen ? now - s.last_seen : null)}</td></tr>`)}
      </table>
      ${entry.presence && html`<p>Presence: ${entry.presence.state} (${entry.presence.reason})</p>`}`}
    </section>`;
}
