// The fleet overview: summary bar, filters, and a virtualised table (only the rows in view are
// in the DOM, so 10,000 robots scroll and update smoothly).
import { html } from 'htm/preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { age, memoryPercent, percent } from '../format.js';
import { summarize } from '../fleet_state.js';

const ROW_HEIGHT = 30;
const OVERSCAN = 8;

const COLUMNS = [
  { key: 'robot_id', label: 'Robot', get: (r) => r.robot_id },
  { key: 'status', label: 'Status', get: (r) => r.status },
  { key: 'teleop', label: 'Teleop', get: (r) => (r.teleop_active ? 1 : 0) },
  { key: 'heartbeat', label: 'Heartbeat', get: (r) => -(r.last_heartbeat_at || 0) },
  { key: 'version', label: 'Version', get: (r) => r.software_version || '' },
  { key: 'cpu', label: 'CPU', get: (r) => r.resources?.cpu_percent ?? -1 },
  { key: 'memory', label: 'Memory', get: (r) => memoryPercent(r.resources) ?? -1 },
  { key: 'battery', label: 'Battery', get: (r) => r.resources?.battery_percent ?? -1 },
  // The transport the robot's heartbeat reports (issue 20): websocket, polling, or — (older).
  { key: 'transport', label: 'Uplink', get: (r) => r.uplink_transport || '' },
];

// Re-render when the fleet changed, at most every `intervalMs` (a 10,000-robot fleet sends
// dozens of updates a second; the eye needs a few frames of them). The first change after a
// quiet spell renders at once (the snapshot's first frame, a lone update): only changes that
// follow a render closely wait for the rest of the interval.
export function useFleetVersion(state, intervalMs = 150) {
  const [version, setVersion] = useState(state.version);
  useEffect(() => {
    let timer = null;
    let last = -Infinity; // when the last render was asked for
    const flush = () => {
      timer = null;
      last = performance.now();
      setVersion(state.version);
    };
    const unsubscribe = state.subscribe(() => {
      if (timer !== null) return;
      const wait = last + intervalMs - performance.now();
      if (wait <= 0) flush();
      else timer = setTimeout(flush, wait);
    });
    setVersion(state.version);
    return () => {
      unsubscribe();
      clearTimeout(timer);
    };
  }, [state, intervalMs]);
  return version;
}

function useClock(intervalMs = 1000) {
  const [now, setNow] = useState(Date.now() / 1000);
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now() / 1000), intervalMs);
    return () => clearInterval(id);
  }, [intervalMs]);
  return now;
}

function matches(r, f) {
  if (f.status && r.status !== f.status) return false;
  if (f.teleop === 'yes' && !r.teleop_active) return false;
  if (f.teleop === 'no' && r.teleop_active) return false;
  if (f.version && (r.software_version || 'unknown') !== f.version) return false;
  if (f.tag && !(r.tags || []).includes(f.tag)) return false;
  if (f.search && !r.robot_id.toLowerCase().includes(f.search.toLowerCase())) return false;
  return true;
}

function Summary({ summary }) {
  const versions = [...summary.byVersion.entries()].sort((a, b) => b[1] - a[1]);
  return html`
    <section class="summary" id="fleet-summary">
      <div class="stat"><b data-summary="total">${summary.total}</b> robots</div>
      ${Object.entries(summary.byStatus).map(([s, n]) => html`
        <div class="stat status-${s}"><b data-summary=${s}>${n}</b> ${s.replace('_', ' ')}</div>`)}
      <div class="stat teleop-on"><b data-summary="teleop">${summary.teleop}</b> teleop now</div>
      <div class="stat versions">${versions.slice(0, 4).map(([v, n]) => html`
        <span class="chip">${v}: ${n}</span>`)}${versions.length > 4 ? ' …' : ''}</div>
    </section>`;
}

function Row({ robot, now, top }) {
  const hb = robot.last_heartbeat_at ? now - robot.last_heartbeat_at : null;
  const res = robot.resources || {};
  return html`
    <a class="row" href=${`#/robots/${encodeURIComponent(robot.robot_id)}`}
       style=${`transform: translateY(${top}px)`} data-robot-id=${robot.robot_id}
       data-status=${robot.status} data-state=${robot.state || ''}
       data-teleop=${robot.teleop_active ? 'on' : 'off'} data-seq=${robot.heartbeat_sequence ?? ''}>
      <span class="c-id">${robot.robot_id}</span>
      <span class="c-status"><i class=${`dot status-${robot.status}`}></i>${robot.status}
        ${robot.state ? html`<small> · ${robot.state}</small>` : ''}</span>
      <span class="c-teleop"><span class=${`teleop ${robot.teleop_active ? 'on' : 'off'}`}
        title=${`score ${(robot.teleop_score ?? 0).toFixed(2)}`}>
        ${robot.teleop_active ? 'driving' : 'idle'}</span></span>
      <span class="c-hb">${age(hb)}</span>
      <span class="c-ver">${robot.software_version || '—'}</span>
      <span class="c-num">${percent(res.cpu_percent)}</span>
      <span class="c-num">${percent(memoryPercent(res))}</span>
      <span class="c-num">${percent(res.battery_percent)}</span>
      <span class="c-transport">${robot.uplink_transport
        ? html`<span class=${`badge transport-${robot.uplink_transport}`}>${robot.uplink_transport}</span>`
        : '—'}</span>
    </a>`;
}

export function Overview({ state }) {
  const version = useFleetVersion(state);
  const now = useClock();
  const [filters, setFilters] = useState({ status: '', teleop: '', version: '', tag: '', search: '' });
  const [sort, setSort] = useState({ key: 'robot_id', dir: 1 });
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  const body = useRef(null);

  useEffect(() => {
    const measure = () => body.current && setHeight(body.current.clientHeight);
    measure();
    window.addEventListener('resize', measure);
    return () => window.removeEventListener('resize', measure);
  }, []);

  const summary = useMemo(() => summarize(state.robots), [version]);
  const tags = useMemo(() => {
    const all = new Set();
    for (const r of state.robots.values()) for (const t of r.tags || []) all.add(t);
    return [...all].sort();
  }, [state.membership]);

  const rows = useMemo(() => {
    const column = COLUMNS.find((c) => c.key === sort.key) || COLUMNS[0];
    const list = [];
    for (const r of state.robots.values()) if (matches(r, filters)) list.push(r);
    list.sort((a, b) => {
      const x = column.get(a);
      const y = column.get(b);
      if (x < y) return -sort.dir;
      if (x > y) return sort.dir;
      return a.robot_id < b.robot_id ? -1 : 1;
    });
    return list;
  }, [version, filters, sort]);

  const first = Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(rows.length, Math.ceil((scrollTop + height) / ROW_HEIGHT) + OVERSCAN);
  const visible = rows.slice(first, last);
  const set = (key) => (e) => setFilters({ ...filters, [key]: e.target.value });
  const sortBy = (key) => setSort(sort.key === key ? { key, dir: -sort.dir } : { key, dir: 1 });

  return html`
    <div class="overview">
      <${Summary} summary=${summary} />
      <section class="filters">
        <input type="search" placeholder="Search robots" value=${filters.search}
          onInput=${set('search')} id="search" />
        <select onChange=${set('status')} value=${filters.status} id="filter-status">
          <option value="">any status</option>
          ${['online', 'stale', 'offline', 'never_seen'].map((s) => html`<option value=${s}>${s}</option>`)}
        </select>
        <select onChange=${set('teleop')} value=${filters.teleop} id="filter-teleop">
          <option value="">teleop: any</option><option value="yes">driving</option>
          <option value="no">idle</option>
        </select>
        <select onChange=${set('version')} value=${filters.version} id="filter-version">
          <option value="">any version</option>
          ${[...summary.byVersion.keys()].sort().map((v) => html`<option value=${v}>${v}</option>`)}
        </select>
        <select onChange=${set('tag')} value=${filters.tag} id="filter-tag">
          <option value="">any tag</option>
          ${tags.map((t) => html`<option value=${t}>${t}</option>`)}
        </select>
        <span class="count" id="row-count">${rows.length} shown</span>
      </section>
      <div class="table">
        <div class="row head">
          ${COLUMNS.map((c) => html`<span class=${`sortable c-${c.key}`} onClick=${() => sortBy(c.key)}>
            ${c.label}${sort.key === c.key ? (sort.dir > 0 ? ' ▲' : ' ▼') : ''}</span>`)}
        </div>
        <div class="body" ref=${body} id="robot-rows"
             onScroll=${(e) => setScrollTop(e.currentTarget.scrollTop)}>
          <div class="spacer" style=${`height: ${rows.length * ROW_HEIGHT}px`}>
            ${visible.map((r, i) => html`<${Row} key=${r.robot_id} robot=${r} now=${now}
              top=${(first + i) * ROW_HEIGHT} />`)}
          </div>
        </div>
      </div>
    </div>`;
}
