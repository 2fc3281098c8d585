// The console's WebSocket: connects, reconnects with back-off, reports its state.
// Every (re)connect starts with a fresh snapshot from the server, which the store uses
// to replace everything it held, so a reconnect never leaves duplicates behind.
import { backoffMs } from './model.js';

export class Connection {
  constructor({ url, probeUrl, onMessage, onState }) {
    this.url = url;
    this.probeUrl = probeUrl;
    this.onMessage = onMessage;
    this.onState = onState;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.state = 'idle';
    this.gotSnapshot = false;
    this.stopped = false;
    this.messages = 0; // received, and the time spent parsing and applying them
    this.handledMs = 0;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, 'bye');
  }

  setState(state, detail = {}) {
    this.state = state;
    this.onState(state, detail);
  }

  open() {
    clearTimeout(this.timer);
    this.gotSnapshot = false;
    this.setState('connecting', { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.retry(String(e));
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.setState('syncing');
    ws.onmessage = (ev) => {
      const started = performance.now();
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      for (const msg of Array.isArray(data) ? data : [data]) {
        if (msg && msg.type === 'snapshot') {
          this.gotSnapshot = true;
          this.attempt = 0;
          this.onMessage(msg);
          this.setState('live');
        } else if (msg) {
          this.onMessage(msg);
        }
      }
      this.messages += Array.isArray(data) ? data.length : 1;
      this.handledMs += performance.now() - started;
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) {
        this.setState('closed');
        return;
      }
      this.retry(ev.code ? `closed (${ev.code})` : 'closed');
    };
    ws.onerror = () => {}; // onclose follows and does the work
  }

  async retry(reason) {
    const delay = backoffMs(this.attempt);
    this.attempt += 1;
    const until = Date.now() + delay;
    // A socket refused before any snapshot may be a bad token: the browser hides the 401
    // of a failed upgrade, so ask a plain endpoint that needs the same token.
    let refused = false;
    if (!this.gotSnapshot && this.probeUrl) {
      try {
        const r = await fetch(this.probeUrl, { cache: 'no-store' });
        refused = r.status === 401 || r.status === 403;
      } catch {
        /* server down: an ordinary reconnect */
      }
    }
    if (this.stopped) return;
    this.setState(refused ? 'refused' : 'reconnecting', { reason, until, attempt: this.attempt });
    this.timer = setTimeout(() => this.open(), Math.max(0, until - Date.now()));
  }

  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  get live() {
    return this.state === 'live';
  }
}
