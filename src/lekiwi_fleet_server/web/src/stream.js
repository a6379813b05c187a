// The dashboard stream (/api/v1/stream): one WebSocket authenticated by the login cookie.
// Its first message is a snapshot of every robot, then one update per committed batch (whole
// rows or deltas, and the batch's events). A lost connection is reported, retried with
// exponential backoff and jitter, and resynchronised by the snapshot the new connection sends.
// Pages listen for event types with `onEvent(type, fn)`, and for updates of other kinds than
// robot batches (a 'deployment' update: one rollout's status and robots per state and wave)
// with `onUpdate(type, fn)`. The same class follows /api/v1/stream/inventory (state null): its
// 'inventory_snapshot', then 'inventory' changes.

export const CLOSE_UNAUTHORIZED = 4401;

export class FleetStream {
  constructor(state, { url, onStatus, minDelayMs = 250, maxDelayMs = 10000 } = {}) {
    this.state = state;
    this.url = url || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/stream`;
    this.onStatus = onStatus || (() => {});
    this.minDelayMs = minDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.stopped = false;
    this.eventHandlers = new Map(); // event type -> Set of functions; '*' gets every event
    this.updateHandlers = new Map(); // update type ('deployment', ...) -> Set of functions
    this.status = 'connecting';
  }

  onEvent(type, fn) {
    if (!this.eventHandlers.has(type)) this.eventHandlers.set(type, new Set());
    this.eventHandlers.get(type).add(fn);
    return () => this.eventHandlers.get(type).delete(fn);
  }

  onUpdate(type, fn) {
    if (!this.updateHandlers.has(type)) this.updateHandlers.set(type, new Set());
    this.updateHandlers.get(type).add(fn);
    return () => this.updateHandlers.get(type).delete(fn);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, 'page closed');
  }

  setStatus(status, detail) {
    this.status = status;
    this.onStatus(status, detail);
  }

  connect() {
    clearTimeout(this.timer);
    this.setStatus(this.attempt ? 'reconnecting' : 'connecting');
    const socket = new WebSocket(this.url);
    this.socket = socket;
    // Where a first render's time goes (the benchmark reads it); the inventory has no state.
    if (this.state) this.state.timing = { connectAt: performance.now() };
    socket.onmessage = (message) => this.receive(message.data);
    socket.onclose = (close) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      if (close.code === CLOSE_UNAUTHORIZED) {
        this.setStatus('unauthorized');
        return;
      }
      this.retry(close.reason || `closed (${close.code})`);
    };
  }

  retry(reason) {
    this.attempt += 1;
    const ceiling = Math.min(this.maxDelayMs, this.minDelayMs * 2 ** (this.attempt - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.setStatus('disconnected', { reason, retryInMs: Math.round(delay) });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  receive(text) {
    let update;
    const received = performance.now();
    try {
      update = JSON.parse(text);
    } catch {
      return;
    }
    if (update.type === 'snapshot') {
      Object.assign(this.state.timing || {}, {
        snapshotAt: received, snapshotBytes: text.length, parseMs: performance.now() - received,
      });
      this.attempt = 0;
      this.state.applySnapshot(update.robots || []);
      this.setStatus('live');
    } else if (update.type === 'error') {
      this.setStatus(update.code === 'unauthorized' ? 'unauthorized' : 'error', update);
      return;
    } else if (update.type === 'update') {
      this.state.applyRows(update.robots || []);
    } else {
      if (update.type === 'inventory_snapshot') { // the start of the inventory stream
        this.attempt = 0;
        this.setStatus('live');
      }
      const handlers = this.updateHandlers.get(update.type);
      if (handlers) for (const fn of handlers) fn(update);
      return;
    }
    const events = update.events || [];
    this.state.addEvents(events);
    for (const event of events) {
      for (const key of [event.type, '*']) {
        const handlers = this.eventHandlers.get(key);
        if (handlers) for (const fn of handlers) fn(event);
      }
    }
  }
}
