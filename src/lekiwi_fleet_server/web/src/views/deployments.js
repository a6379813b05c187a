// Deployments: the list with a form to start one, and one deployment with its waves, per-robot
// progress, pauses and rollbacks and its controls. The stream's 'deployment' updates (one per
// transition) trigger a re-read of what they change; controls show for operators and admins
// only (the server checks the role again).
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import { duration, time } from '../format.js';

export const canOperate = (me) => me.role === 'operator' || me.role === 'admin';

// Which controls a deployment's status allows (as DeploymentEngine.command; it refuses the
// others with 409, and an ended deployment takes none).
const ACTIONS = {
  running: ['pause', 'abort', 'rollback'],
  paused: ['resume', 'abort', 'rollback'],
  aborting: ['rollback'],
};
const MAX_ROWS = 500;
const LABELS = { pause: 'Pause', resume: 'Resume', abort: 'Abort', rollback: 'Roll back' };

// Call `load` now, again (coalesced, 300 ms unless `delayMs` says otherwise) whenever the stream
// sends a matching update, and after the stream reconnected.
function useLive(stream, load, matches, deps, delayMs = () => 300) {
  useEffect(() => {
    let cancelled = false;
    let pending = null;
    const run = () => load(() => cancelled);
    run();
    const off = stream.onUpdate('deployment', (update) => {
      if (matches(update.deployment) && pending === null) {
        pending = setTimeout(() => { pending = null; run(); }, delayMs());
      }
    });
    // A new snapshot means the stream reconnected: updates may have been missed, read again.
    let snapshotAt = stream.state.snapshotAt;
    const reconnect = stream.state.subscribe((state) => {
      if (state.snapshotAt !== snapshotAt) {
        snapshotAt = state.snapshotAt;
        run();
      }
    });
    return () => {
      cancelled = true;
      off();
      reconnect();
      clearTimeout(pending);
    };
  }, deps);
}

function StartForm({ state, onStarted }) {
  const [releases, setReleases] = useState([]);
  const [release, setRelease] = useState('');
  const [target, setTarget] = useState('tag');
  const [tag, setTag] = useState('');
  const [list, setList] = useState('');
  const [waves, setWaves] = useState('0.05, 0.25, 0.5, 1');
  const [force, setForce] = useState(false);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    api.releases().then((r) => {
      setReleases(r);
      if (r.length) setRelease(r[r.length - 1].version);
    }, (err) => setError(err.message));
  }, []);
  const tags = [...new Set([...state.robots.values()].flatMap((r) => r.tags || []))].sort();

  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    const body = { release_version: release, force };
    if (target === 'all') body.all = true;
    else if (target === 'tag') body.tag = tag;
    else body.robots = list.split(/[\s,]+/).filter(Boolean);
    const fractions = waves.split(/[\s,]+/).filter(Boolean).map(Number);
    if (fractions.some((f) => !(f > 0 && f <= 1))) {
      setError('waves: fractions of the targets, each in (0, 1], e.g. 0.1, 0.5, 1');
      return;
    }
    body.waves = fractions;
    if (target === 'all' && !window.confirm(`Deploy ${release} to every robot of the fleet?`)) {
      return;
    }
    setBusy(true);
    try {
      onStarted(await api.startDeployment(body));
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  return html`
    <form class="panel start-deployment" id="start-deployment" onSubmit=${submit}>
      <h3>Start a deployment</h3>
      <label>Release <select name="release" value=${release} required
          onChange=${(e) => setRelease(e.target.value)}>
        ${releases.length === 0 && html`<option value="">no release pushed yet</option>`}
        ${releases.map((r) => html`<option value=${r.version}>${
          `${r.version} (${r.files} files, ${time(r.created_at)})`}</option>`)}
      </select></label>
      <fieldset class="targets">
        <legend>Targets</legend>
        ${['all', 'tag', 'list'].map((t) => html`<label><input type="radio" name="target"
          value=${t} checked=${target === t} onChange=${() => setTarget(t)} />
          ${{ all: 'all robots', tag: 'by tag', list: 'robot list' }[t]}</label>`)}
        ${target === 'tag' && html`<input name="tag" list="known-tags" placeholder="tag"
          value=${tag} required onInput=${(e) => setTag(e.target.value)} />
          <datalist id="known-tags">${tags.map((t) => html`<option value=${t} />`)}</datalist>`}
        ${target === 'list' && html`<input name="robots" placeholder="kiwi-001, kiwi-002"
          value=${list} required onInput=${(e) => setList(e.target.value)} />`}
      </fieldset>
      <label>Waves <input name="waves" value=${waves}
        onInput=${(e) => setWaves(e.target.value)} /></label>
      <label class="inline"><input type="checkbox" name="force" checked=${force}
        onChange=${(e) => setForce(e.target.checked)} /> also robots being driven</label>
      <button type="submit" disabled=${busy || !release}>Start</button>
      ${error && html`<p class="error" role="alert">${error}</p>`}
    </form>`;
}

export function DeploymentsPage({ state, stream, me }) {
  const [rows, setRows] = useState(null);
  const [error, setError] = useState(null);
  useLive(stream, async (cancelled) => {
    try {
      const list = await api.deployments();
      if (!cancelled()) setRows(list);
    } catch (err) {
      if (!cancelled()) setError(err.message);
    }
  }, () => true, [stream]);
  const started = (d) => { location.hash = `#/deployments/${encodeURIComponent(d.deployment_id)}`; };
  return html`
    <div class="deployments-page" id="deployments-page">
      <h2>Deployments</h2>
      ${error && html`<p class="error">${error}</p>`}
      ${canOperate(me) && html`<${StartForm} state=${state} onStarted=${started} />`}
      <table class="list" id="deployments">
        <tr><th>Deployment</th><th>Release</th><th>Status</th><th>Robots</th><th>Started</th>
          <th>Updated</th></tr>
        ${(rows || []).map((d) => html`<tr data-deployment-id=${d.deployment_id}
            data-status=${d.status}>
          <td><a href=${`#/deployments/${encodeURIComponent(d.deployment_id)}`}>
            ${d.deployment_id}</a></td>
          <td>${d.release_version}</td>
          <td><span class=${`badge dep-${d.status}`}>${d.status}</span></td>
          <td>${(d.robots || []).length}</td><td>${time(d.created_at)}</td>
          <td>${time(d.updated_at)}</td></tr>`)}
      </table>
      ${rows && rows.length === 0 && html`<p>No deployments yet.</p>`}
    </div>`;
}

function Progress({ wave }) {
  const size = wave.robots.length || 1;
  const part = (n, cls) => n ? html`<span class=${`seg ${cls}`}
    style=${`width: ${(100 * n) / size}%`} title=${`${n} ${cls}`}></span>` : null;
  return html`<div class="progress">${part(wave.succeeded, 'succeeded')}
    ${part(wave.failed, 'failed')}${part(wave.running, 'running')}
    ${part(wave.skipped, 'skipped')}</div>`;
}

export function DeploymentPage({ stream, me, deploymentId }) {
  const [d, setD] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(null);
  const [stateFilter, setStateFilter] = useState('');
  const size = useRef(0);
  useLive(stream, async (cancelled) => {
    try {
      const found = await api.deployment(deploymentId);
      size.current = found.robots.length;
      if (!cancelled()) { setD(found); setError(null); }
    } catch (err) {
      if (!cancelled()) setError(err.message);
    }
  }, (p) => p.deployment_id === deploymentId, [stream, deploymentId],
  // A deployment of thousands of robots is a large read: at most one every 2 s.
  () => (size.current > 1000 ? 2000 : 300));

  const act = async (action) => {
    if (action !== 'pause' && action !== 'resume'
        && !window.confirm(`${LABELS[action]} deployment ${deploymentId}?`)) return;
    setBusy(action);
    setError(null);
    try {
      setD(await api.deploymentAction(deploymentId, action));
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(null);
    }
  };

  if (!d) return html`<div id="deployment-page"><p><a href="#/deployments">← Deployments</a></p>
    ${error ? html`<p class="error">${error}</p>` : html`<p>Loading…</p>`}</div>`;
  const byState = {};
  for (const r of d.robots) byState[r.state] = (byState[r.state] || 0) + 1;
  const rolledBack = d.robots.filter((r) => r.rollback);
  const listed = d.robots.filter((r) => !stateFilter || r.state === stateFilter);
  const shown = listed.slice(0, MAX_ROWS); // the page stays light at 10,000 robots
  return html`
    <div class="deployment-page" id="deployment-page" data-deployment-id=${d.deployment_id}
         data-status=${d.status}>
      <p><a href="#/deployments">← Deployments</a></p>
      <h2>${d.deployment_id} <span class=${`badge dep-${d.status}`} id="deployment-status">
        ${d.status}</span></h2>
      <dl class="facts">
        <dt>Release</dt><dd>${d.release_version}</dd>
        <dt>Started</dt><dd>${time(d.created_at)} by ${d.created_by || '—'}</dd>
        <dt>Robots</dt><dd>${Object.entries(byState).map(([s, n]) => html`
          <span class="chip">${s}: ${n}</span>`)}</dd>
        <dt>Planned waves</dt><dd>${d.planned_waves.join(' → ') || '—'}</dd>
        ${d.reason && html`<dt>${d.status === 'paused' ? 'Paused' : 'Reason'}</dt>
          <dd id="deployment-reason">${d.reason}</dd>`}
        ${rolledBack.length > 0 && html`<dt>Rollbacks</dt><dd>${rolledBack.length} robots
          (${rolledBack.map((r) => `${r.robot_id}: ${r.rollback}`).join(', ')})</dd>`}
      </dl>
      ${canOperate(me) && html`<div class="controls" id="deployment-controls">
        ${(ACTIONS[d.status] || []).map((a) => html`<button data-action=${a}
          disabled=${busy !== null} onClick=${() => act(a)}>${LABELS[a]}</button>`)}
      </div>`}
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <h3>Waves</h3>
      <table class="list" id="deployment-waves">
        <tr><th>Wave</th><th>Robots</th><th>Progress</th><th>Succeeded</th><th>Failed</th>
          <th>Running</th><th>Pending</th></tr>
        ${d.waves.map((w) => html`<tr data-wave=${w.wave}><td>${w.wave}</td>
          <td>${w.robots.length}</td><td><${Progress} wave=${w} /></td><td>${w.succeeded}</td>
          <td>${w.failed}</td><td>${w.running}</td><td>${w.pending}</td></tr>`)}
      </table>
      <h3>Robots <select value=${stateFilter} id="robot-state-filter"
          onChange=${(e) => setStateFilter(e.target.value)}>
        <option value="">any state</option>
        ${Object.keys(byState).sort().map((s) => html`<option value=${s}>${s}</option>`)}
      </select>
      ${listed.length > shown.length && html` <small>the first ${shown.length} of
        ${listed.length}</small>`}</h3>
      <table class="list" id="deployment-robots">
        <tr><th>Robot</th><th>Wave</th><th>State</th><th>Attempts</th><th>Transferred</th>
          <th>Took</th><th>Rollback</th><th>Message</th></tr>
        ${shown.map((r) => html`<tr data-robot-id=${r.robot_id} data-state=${r.state}>
          <td><a href=${`#/robots/${encodeURIComponent(r.robot_id)}`}>${r.robot_id}</a></td>
          <td>${r.wave ?? '—'}</td>
          <td>${r.state}${r.waiting ? html` <small>(waiting: ${r.waiting})</small>` : ''}</td>
          <td>${r.attempts}</td>
          <td>${r.full_bytes ? `${Math.round(r.transferred_bytes / 1024)} of ${
            Math.round(r.full_bytes / 1024)} KB` : '—'}</td>
          <td>${r.duration_s ? duration(r.duration_s) : '—'}</td>
          <td>${r.rollback || '—'}</td><td>${r.message || ''}</td></tr>`)}
      </table>
    </div>`;
}

// The robot page's "Deployment history": the newest deployments naming the robot, with what
// happened to it in each.
export function RobotDeployments({ stream, robotId }) {
  const [rows, setRows] = useState(null);
  const [error, setError] = useState(null);
  useLive(stream, async (cancelled) => {
    try {
      const mine = (await api.deployments())
        .filter((d) => (d.robots || []).includes(robotId)).slice(0, 10);
      const details = await Promise.all(mine.map((d) => api.deployment(d.deployment_id)));
      if (!cancelled()) {
        setRows(details.map((d) => ({ ...d, me: d.robots.find((r) => r.robot_id === robotId) })));
      }
    } catch (err) {
      if (!cancelled()) setError(err.message);
    }
  }, (p) => p.robots !== undefined, [stream, robotId]);
  return html`
    <section>
      <h3>Deployment history</h3>
      ${error && html`<p class="error">${error}</p>`}
      ${rows && rows.length === 0 && html`<p>No deployments of this robot.</p>`}
      ${rows && rows.length > 0 && html`<table class="list" id="robot-deployments">
        <tr><th>Deployment</th><th>Release</th><th>Its state</th><th>From</th><th>Rollback</th>
          <th>Started</th></tr>
        ${rows.map((d) => html`<tr data-deployment-id=${d.deployment_id}>
          <td><a href=${`#/deployments/${encodeURIComponent(d.deployment_id)}`}>
            ${d.deployment_id}</a> <small>(${d.status})</small></td>
          <td>${d.release_version}</td><td>${d.me?.state || '—'}</td>
          <td>${d.me?.previous_version || '—'}</td><td>${d.me?.rollback || '—'}</td>
          <td>${time(d.created_at)}</td></tr>`)}
      </table>`}
    </section>`;
}
