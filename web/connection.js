// The console's WebSocket: connects, reconnects with back-off, reports its state.
// Every (re)connect starts with a fresh snapshot from the server, which the store uses
// to replace everything it held, so a reconnect never leaves duplicates behind.
// With several servers (primary and standbys) a connection that fails before its
// snapshot moves on to the next one at once; the back-off starts only after a whole
// round failed. A standby refuses (503) until it takes over.
import { backoffMs } from './model.js';

export class Connection {
  constructor({ servers = [null], url, probeUrl, onMessage, onState }) {
    this.servers = servers.length ? servers : [null];
    this.index = 0;
    this.failedInRound = 0;
    this.urlFor = typeof url === 'function' ? url : () => url;
    this.probeFor = typeof probeUrl === 'function' ? probeUrl : () => probeUrl;
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

  get host() {
    return this.servers[this.index];
  }

  open() {
    clearTimeout(this.timer);
    this.gotSnapshot = false;
    this.setState('connecting', { attempt: this.attempt, host: this.host });
    let ws;
    try {
      ws = new WebSocket(this.urlFor(this.host));
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
          this.failedInRound = 0;
          this.onMessage(msg);
          this.setState('live', { host: this.host });
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
    // A socket refused before any snapshot may be a bad token: the browser hides the 401
    // of a failed upgrade, so ask a plain endpoint that needs the same token. A 503 is a
    // standby (or a server that cannot write): another server may answer.
    let refused = false;
    let standby = false;
    const probe = this.probeFor(this.host);
    if (!this.gotSnapshot && probe) {
      try {
        const r = await fetch(probe, { cache: 'no-store' });
        refused = r.status === 401 || r.status === 403;
        standby = r.status === 503;
      } catch {
        /* server down: an ordinary reconnect */
      }
    }
    if (this.stopped) return;
    if (this.servers.length > 1) {
      // Move on; wait only once every server has been tried in this round.
      this.index = (this.index + 1) % this.servers.length;
      this.failedInRound += 1;
      if (this.failedInRound < this.servers.length) {
        this.setState(standby ? 'standby' : 'connecting', { reason, attempt: this.attempt, host: this.host });
        this.timer = setTimeout(() => this.open(), 50);
        return;
      }
      this.failedInRound = 0;
    }
    const delay = backoffMs(this.attempt);
    this.attempt += 1;
    const until = Date.now() + delay;
    this.setState(refused ? 'refused' : 'reconnecting', { reason, until, attempt: this.attempt, host: this.host });
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
