// One robot: live state from the stream, telemetry charts (uPlot, from the downsampled range
// API), its event timeline, its teleoperation sessions, its deployments and discovery sources.
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { api } from '../api.js';
import { age, duration, memoryPercent, percent, time } from '../format.js';
import { RobotDeployments } from './deployments.js';
import { DiscoverySources } from './inventory.js';
import { useFleetVersion } from './overview.js';

const RANGES = { '15 min': 900, '1 h': 3600, '6 h': 21600, '24 h': 86400 };
const CHARTS = [
  { title: 'CPU %', fields: ['cpu_percent'] },
  { title: 'Memory used (MB)', fields: ['memory_used_bytes'], scale: 1 / 1e6 },
  { title: 'Battery %', fields: ['battery_percent'] },
  { title: 'Temperature °C', fields: ['temperature_c'] },
];
const FIELDS = [...new Set(CHARTS.flatMap((c) => c.fields))];

function Chart({ title, points, fields, scale = 1, span }) {
  const el = useRef(null);
  const plot = useRef(null);
  const spanRef = useRef(span);
  spanRef.current = span;
  useEffect(() => {
    const xs = points.map((p) => p.bucket_start);
    const series = fields.map((f) => points.map((p) => {
      const v = p.values[f];
      return v === null || v === undefined ? null : v * scale;
    }));
    const data = [xs, ...series];
    if (!plot.current) {
      plot.current = new uPlot({
        width: Math.max(280, (el.current.clientWidth || 420) - 8), height: 180, title,
        series: [{}, ...fields.map((f, i) => ({
          label: f, stroke: ['#2b7de9', '#e9702b', '#2bb673'][i % 3], width: 1.5, spanGaps: true,
        }))],
        axes: [{}, { size: 50 }],
        // The queried window, not the data's extent: a fresh robot has one bucket.
        scales: { x: { time: true, range: () => spanRef.current } },
      }, data, el.current);
    } else {
      plot.current.setData(data);
    }
  }, [points]);
  useEffect(() => () => plot.current && plot.current.destroy(), []);
  return html`<div class="chart" ref=${el} data-chart=${fields.join(',')}
    data-points=${points.length}></div>`;
}

async function pages(fetchPage, key) {
  // Pages run oldest first: follow them to the end, keep the newest 200 (bounded).
  let after = 0;
  let items = [];
  for (let page = 0; page < 20; page += 1) {
    const result = await fetchPage(after);
    items = items.concat(result[key]).slice(-200);
    if (result.next_after === null || result.next_after === undefined) break;
    after = result.next_after;
  }
  return items;
}

async function loadTimeline(robotId) {
  // The timeline's human summaries, with who did it from the events' metadata.
  const [entries, events] = await Promise.all([
    pages((after) => api.timeline({ robot_id: robotId, after, limit: 1000 }), 'entries'),
    pages((after) => api.events(robotId, { after, limit: 1000 }), 'events'),
  ]);
  const actors = new Map(events.map((e) => [e.position, e.metadata?.actor]));
  return entries.map((e) => ({ ...e, actor: actors.get(e.position) })).reverse();
}

export function RobotPage({ state, stream, robotId }) {
  useFleetVersion(state, 250);
  const robot = state.robots.get(robotId);
  const [range, setRange] = useState(3600);
  const [points, setPoints] = useState([]);
  const [span, setSpan] = useState([Date.now() / 1000 - range, Date.now() / 1000]);
  const [timeline, setTimeline] = useState([]);
  const [sessions, setSessions] = useState([]);
  const [error, setError] = useState(null);
  const [uplink, setUplink] = useState(null); // the transport in use: websocket or polling

  useEffect(() => {
    // Not on the stream (the gateway knows it, not the read model): asked every 5 s.
    let cancelled = false;
    const load = async () => {
      try {
        const r = await api.robot(robotId);
        if (!cancelled) setUplink(r.connected ? r.transport : null);
      } catch {
        if (!cancelled) setUplink(null);
      }
    };
    load();
    const id = setInterval(load, 5000);
    return () => {
      cancelled = true;
      clearInterval(id);
    };
  }, [robotId]);

  useEffect(() => {
    let cancelled = false;
    const load = async () => {
      const end = Date.now() / 1000;
      const bucket = Math.max(1, Math.round(range / 300));
      try {
        const data = await api.telemetry(robotId, {
          start: end - range, end, bucket_s: bucket, fields: FIELDS.join(','),
        });
        if (!cancelled) {
          setSpan([end - range, end]);
          setPoints(data);
        }
      } catch (err) {
        if (!cancelled) setError(err.message);
      }
    };
    load();
    const id = setInterval(load, 10000);
    return () => {
      cancelled = true;
      clearInterval(id);
    };
  }, [robotId, range]);

  useEffect(() => {
    let cancelled = false;
    const refresh = async () => {
      try {
        const [t, s] = await Promise.all([loadTimeline(robotId), api.teleopSessions(robotId)]);
        if (!cancelled) {
          setTimeline(t);
          setSessions(s);
        }
      } catch (err) {
        if (!cancelled) setError(err.message);
      }
    };
    refresh();
    // New events of this robot arrive on the stream: refresh the lists they change.
    let pending = null;
    const off = stream.onEvent('*', (event) => {
      if (event.stream_id === `robot-${robotId}` && pending === null) {
        pending = setTimeout(() => { pending = null; refresh(); }, 300);
      }
    });
    return () => {
      cancelled = true;
      off();
      clearTimeout(pending);
    };
  }, [robotId]);

  const now = Date.now() / 1000;
  const res = robot?.resources || {};
  return html`
    <div class="robot-page" id="robot-page" data-robot-id=${robotId}>
      <p><a href="#/">← Fleet</a></p>
      <h2>${robotId}
        ${robot && html` <span class=${`badge status-${robot.status}`}>${robot.status}</span>
        <span class=${`teleop ${robot.teleop_active ? 'on' : 'off'}`} id="robot-teleop">
          ${robot.teleop_active ? 'driving' : 'idle'}</span>`}</h2>
      ${error && html`<p class="error">${error}</p>`}
      ${robot ? html`
        <dl class="facts">
          <dt>State</dt><dd>${robot.state || '—'}</dd>
          <dt>Uplink</dt><dd id="robot-uplink">${uplink || 'not connected'}</dd>
          <dt>Heartbeat</dt><dd>${age(robot.last_heartbeat_at ? now - robot.last_heartbeat_at : null)}</dd>
          <dt>Software</dt><dd>${robot.software_version || '—'} (agent ${robot.agent_version || '—'})</dd>
          <dt>CPU</dt><dd>${percent(res.cpu_percent)}</dd>
          <dt>Memory</dt><dd>${percent(memoryPercent(res))}</dd>
          <dt>Battery</dt><dd>${percent(res.battery_percent)}</dd>
          <dt>Agent</dt><dd id="robot-agent">${agentFigures(robot)}</dd>
          <dt>Teleop score</dt><dd>${(robot.teleop_score ?? 0).toFixed(2)}</dd>
          <dt>Tags</dt><dd>${(robot.tags || []).join(', ') || '—'}</dd>
        </dl>` : html`<p>Not in the fleet (yet).</p>`}
      <section>
        <h3>Telemetry
          <span class="ranges">${Object.entries(RANGES).map(([label, s]) => html`
            <button class=${s === range ? 'active' : ''} onClick=${() => setRange(s)}>${label}</button>`)}
          </span></h3>
        <div class="charts" id="charts">
          ${CHARTS.map((c) => html`<${Chart} key=${`${c.title}-${range}`} title=${c.title}
            fields=${c.fields} scale=${c.scale} points=${points} span=${span} />`)}
        </div>
      </section>
      <div class="columns">
        <section>
          <h3>Teleop sessions</h3>
          <table class="list" id="teleop-sessions">
            <tr><th>Started</th><th>Duration</th><th>Score</th><th>End</th></tr>
            ${sessions.map((s) => html`<tr>
              <td>${time(s.started_at)}</td><td>${duration(s.duration_s)}</td>
              <td>${s.score === null ? '—' : s.score.toFixed(2)}</td><td>${s.end_reason || '—'}</td>
            </tr>`)}
          </table>
        </section>
        <section>
          <h3>Event timeline</h3>
          <ol class="timeline" id="timeline">
            ${timeline.map((e) => html`<li class=${`sev-${e.severity}`}>
              <time>${time(e.occurred_at)}</time> <b>${e.type}</b> ${e.summary}
              ${e.actor && html` <span class="actor">by ${e.actor}</span>`}</li>`)}
          </ol>
        </section>
      </div>
      <div class="columns">
        <${RobotDeployments} stream=${stream} robotId=${robotId} />
        <${DiscoverySources} robotId=${robotId} />
      </div>
    </div>`;
}

// What the agent reports of itself in its heartbeat (issue 20); older agents report none.
function agentFigures(robot) {
  const res = robot.resources || {};
  const mb = (v) => (v === null || v === undefined ? '—' : `${Number(v).toFixed(1)} MB`);
  if (res.agent_rss_mb === undefined && !robot.uplink_transport) return 'not reported';
  const p99 = res.uplink_ack_p99_ms;
  return `${robot.uplink_transport || '—'} · memory ${mb(res.agent_rss_mb)} RSS / ${
    mb(res.agent_uss_mb)} USS · ack p99 ${p99 === null || p99 === undefined ? '—' : `${Math.round(p99)} ms`}`;
}
