// The fleet as the page holds it: rows by robot id, kept current by the dashboard stream.
// A snapshot replaces every row; an update's rows are whole rows or deltas, applied as
// gateway/summary_deltas.py's apply_delta does (mapping fields merged entry by entry).

const MAPPINGS = new Set(['resources', 'telemetry']);

export function applyDelta(row, delta) {
  const out = { ...row };
  for (const [name, value] of Object.entries(delta)) {
    if (MAPPINGS.has(name) && value && typeof value === 'object') {
      out[name] = { ...(out[name] || {}), ...value };
    } else {
      out[name] = value;
    }
  }
  return out;
}

export class FleetState {
  constructor() {
    this.robots = new Map();
    this.version = 0; // bumped on every change: views compare it to skip work
    this.membership = 0; // bumped when robots come or go (the sort order may change)
    this.events = []; // the newest stream events, newest last
    this.listeners = new Set();
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  applySnapshot(rows) {
    this.snapshotAt = performance.now(); // when the stream's snapshot arrived (the bench reads it)
    this.robots = new Map(rows.map((r) => [r.robot_id, r]));
    this.membership += 1;
    this.changed();
  }

  applyRows(rows) {
    for (const delta of rows) {
      const current = this.robots.get(delta.robot_id);
      if (current === undefined) this.membership += 1;
      this.robots.set(delta.robot_id, current ? applyDelta(current, delta) : delta);
    }
    if (rows.length) this.changed();
  }

  addEvents(events) {
    if (!events.length) return;
    this.events.push(...events);
    if (this.events.length > 500) this.events.splice(0, this.events.length - 500);
  }

  changed() {
    this.version += 1;
    for (const listener of this.listeners) listener(this);
  }
}

// Counts by status, teleop now, versions in the fleet (the overview's summary bar).
export function summarize(robots) {
  const byStatus = { online: 0, stale: 0, offline: 0, never_seen: 0 };
  const byVersion = new Map();
  let teleop = 0;
  for (const r of robots.values()) {
    byStatus[r.status] = (byStatus[r.status] || 0) + 1;
    if (r.teleop_active) teleop += 1;
    const v = r.software_version || 'unknown';
    byVersion.set(v, (byVersion.get(v) || 0) + 1);
  }
  return { total: robots.size, byStatus, teleop, byVersion };
}
