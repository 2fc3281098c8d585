// The console's state and the arithmetic on it: no DOM, no Leaflet, so node can test it.
// Names follow wire-contract.md sections 4 to 7.

export const SEVERITY_RANK = { minor: 0, injury: 1, critical: 2 };
export const ACTIVE_ASSIGNMENT = new Set(['assigned', 'en_route', 'on_scene']);
export const CLOSED_STATES = new Set(['closed', 'cancelled']);
export const UNIT_STATUSES = ['available', 'assigned', 'en_route', 'on_scene', 'stale', 'off_duty'];

// Defaults of the engine's policy (contract section 7); the console only uses them to
// say when something is late, never to decide anything.
export const POLICY = {
  ackWithinMs: 30_000,
  remoteLiabilityMs: 300_000,
  // A report still without a unit after this long is flagged: there is no unit to send.
  assignTargetMs: 60_000,
};

const EARTH_RADIUS_M = 6371008.8; // as geo/geo.hpp, so ETAs match the engine's
const RAD = Math.PI / 180;

export function distanceM(lat1, lon1, lat2, lon2) {
  const dLat = (lat2 - lat1) * RAD;
  const dLon = (lon2 - lon1) * RAD;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * RAD) * Math.cos(lat2 * RAD) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

// Contract section 7: ground 1.3 x distance at 30 km/h; air 180 s then 200 km/h.
export function etaSeconds(kind, metres) {
  if (kind === 'heli') return 180 + metres / (200 / 3.6);
  return (metres * 1.3) / (30 / 3.6);
}

export function isAssignable(u) {
  return u.status === 'available' && u.lat != null && u.lon != null;
}

// A manual override may also take a unit busy elsewhere (the server cancels that task).
const OVERRIDABLE = new Set(['available', 'assigned', 'en_route', 'on_scene']);

export function isOpen(inc) {
  return !CLOSED_STATES.has(inc.state);
}

export function activeAssignments(inc) {
  return (inc.assignments || []).filter((a) => ACTIVE_ASSIGNMENT.has(a.state));
}

// Holds what the server said last. Unit objects are kept and updated in place so a layer
// can cache per-unit drawing data on them; a snapshot replaces everything.
export class Store {
  constructor() {
    this.units = new Map();
    this.incidents = new Map(); // open incidents only
    this.listeners = new Set();
    this.snapshots = 0;
    this.offsetMs = 0; // server clock minus ours, from the snapshot's ts
  }

  // The server's time, as near as we know it: the clocks count from its timestamps.
  now() {
    return Date.now() + this.offsetMs;
  }

  on(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(what, obj) {
    for (const fn of this.listeners) fn(what, obj);
  }

  applySnapshot(msg, receivedAt = Date.now()) {
    if (typeof msg.ts === 'number') this.offsetMs = msg.ts - receivedAt;
    this.units.clear();
    this.incidents.clear();
    for (const u of msg.units || []) this.units.set(u.id, normaliseUnit({}, u));
    for (const inc of msg.incidents || []) if (isOpen(inc)) this.incidents.set(inc.id, inc);
    this.snapshots += 1;
    this.emit('snapshot', msg);
  }

  applyUnit(u) {
    if (typeof u.id !== 'string') return;
    let held = this.units.get(u.id);
    if (!held) {
      held = {};
      this.units.set(u.id, held);
    }
    normaliseUnit(held, u);
    this.emit('unit', held);
  }

  applyIncident(inc) {
    if (typeof inc.id !== 'string') return;
    if (isOpen(inc)) this.incidents.set(inc.id, inc);
    else this.incidents.delete(inc.id);
    this.emit('incident', inc);
  }

  // Dispatches one message from /ws/console; returns false for types it does not hold.
  apply(msg) {
    switch (msg.type) {
      case 'snapshot': this.applySnapshot(msg); return true;
      case 'unit': this.applyUnit(msg); return true;
      case 'incident': this.applyIncident(msg); return true;
      default: return false;
    }
  }

  countByStatus() {
    const n = Object.fromEntries(UNIT_STATUSES.map((s) => [s, 0]));
    for (const u of this.units.values()) n[u.status] = (n[u.status] || 0) + 1;
    return n;
  }
}

function normaliseUnit(held, u) {
  const moved = held.lat !== u.lat || held.lon !== u.lon;
  held.id = u.id;
  held.kind = u.kind || held.kind || 'moto';
  held.status = u.status || held.status || 'available';
  held.callsign = u.callsign ?? held.callsign ?? u.id;
  held.lat = typeof u.lat === 'number' ? u.lat : null;
  held.lon = typeof u.lon === 'number' ? u.lon : null;
  held.ts = u.ts ?? null;
  held.incident = u.incident ?? null;
  if (moved) held._pz = -1; // a layer's cached projection is out of date
  return held;
}

// The clocks that matter for one open incident at time `now` (all in ms).
//  sinceReport: how long ago it was reported.
//  toAssign: {ms, running}: report to first assignment, still running while nobody is assigned.
//  ackWait: {ms, unit, overdue} for the oldest assignment still waiting for its ack.
//  remote: {remainingMs, overdue} for the remote-liability countdown.
//  slackMs: time left before the nearest deadline (Infinity when none runs); negative = late.
export function incidentClocks(inc, now, policy = POLICY) {
  const reported = inc.reported_ts ?? now;
  const out = { sinceReport: Math.max(0, now - reported), toAssign: null, ackWait: null, remote: null, slackMs: Infinity, overdue: false };
  const assignments = inc.assignments || [];
  const firstAssigned = assignments.reduce((m, a) => (a.assigned_ts != null && a.assigned_ts < m ? a.assigned_ts : m), Infinity);
  const hasActive = assignments.some((a) => ACTIVE_ASSIGNMENT.has(a.state));

  if (inc.state === 'remote') {
    const deadline = inc.remote_deadline_ts ?? reported + policy.remoteLiabilityMs;
    out.remote = { remainingMs: deadline - now, overdue: deadline < now };
    out.slackMs = Math.min(out.slackMs, deadline - now);
  } else if (Number.isFinite(firstAssigned)) {
    out.toAssign = { ms: Math.max(0, firstAssigned - reported), running: false };
  }
  if ((inc.state === 'dispatching' || inc.state === 'reported') && !hasActive) {
    out.toAssign = { ms: Math.max(0, now - reported), running: true };
    out.slackMs = Math.min(out.slackMs, reported + policy.assignTargetMs - now);
  }
  for (const a of assignments) {
    if (a.state !== 'assigned' || a.acked_ts != null || a.assigned_ts == null) continue;
    // Our estimate of the server's clock can trail it by the network delay: never below 0.
    const waited = Math.max(0, now - a.assigned_ts);
    if (!out.ackWait || waited > out.ackWait.ms) {
      out.ackWait = { ms: waited, unit: a.unit, overdue: waited > policy.ackWithinMs };
    }
    out.slackMs = Math.min(out.slackMs, a.assigned_ts + policy.ackWithinMs - now);
  }
  out.overdue = out.slackMs < 0;
  return out;
}

// Most urgent first: late ones, then those with a running deadline, then by severity,
// then by the time left, then the oldest report.
export function sortByUrgency(incidents, now, policy = POLICY) {
  const keyed = incidents.map((inc) => ({ inc, c: incidentClocks(inc, now, policy) }));
  keyed.sort((a, b) => {
    const lateA = a.c.overdue ? 0 : 1;
    const lateB = b.c.overdue ? 0 : 1;
    if (lateA !== lateB) return lateA - lateB;
    const runA = Number.isFinite(a.c.slackMs) ? 0 : 1;
    const runB = Number.isFinite(b.c.slackMs) ? 0 : 1;
    if (runA !== runB) return runA - runB;
    const sev = (SEVERITY_RANK[b.inc.severity] ?? 0) - (SEVERITY_RANK[a.inc.severity] ?? 0);
    if (sev !== 0) return sev;
    if (a.c.slackMs !== b.c.slackMs && runA === 0) return a.c.slackMs - b.c.slackMs;
    return (a.inc.reported_ts ?? 0) - (b.inc.reported_ts ?? 0);
  });
  return keyed;
}

// Units that could be sent by hand, nearest ETA first. Units already active on the
// incident are left out: assigning them again would say nothing new.
export function candidatesFor(inc, units, { limit = 10, kinds = null, includeBusy = false } = {}) {
  const busy = new Set(activeAssignments(inc).map((a) => a.unit));
  const out = [];
  for (const u of units) {
    if (busy.has(u.id)) continue;
    if (!(includeBusy ? OVERRIDABLE.has(u.status) && u.lat != null && u.lon != null : isAssignable(u))) continue;
    if (kinds && !kinds.has(u.kind)) continue;
    const d = distanceM(u.lat, u.lon, inc.lat, inc.lon);
    out.push({ unit: u, distanceM: d, etaS: etaSeconds(u.kind, d) });
  }
  out.sort((a, b) => a.etaS - b.etaS || a.distanceM - b.distanceM);
  return out.slice(0, limit);
}

// A report id the server will never see twice from us: time plus randomness.
export function makeReportId(now = Date.now(), rand = Math.random) {
  return `console-${now}-${Math.floor(rand() * 0x1000000).toString(36).padStart(5, '0')}`;
}

// Reconnect back-off: 0.5 s doubling to 30 s, with up to 30% jitter so many consoles
// do not all come back in the same instant after a server restart.
export function backoffMs(attempt, rand = Math.random) {
  const base = Math.min(30_000, 500 * 2 ** Math.max(0, attempt));
  return Math.round(base * (1 - 0.3 * rand()));
}

export function fmtDuration(ms) {
  let s = Math.floor(Math.abs(ms) / 1000);
  const neg = ms < 0 && s > 0;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const body = h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}` : `${m}:${String(s).padStart(2, '0')}`;
  return neg ? `-${body}` : body;
}

export function buildReport(fields, lat, lon, now = Date.now(), rand = Math.random) {
  const report = {
    type: 'report',
    id: makeReportId(now, rand),
    lat: Math.round(lat * 1e6) / 1e6,
    lon: Math.round(lon * 1e6) / 1e6,
    ts: now,
    severity: fields.severity,
    injured: Math.max(0, Math.floor(Number(fields.injured) || 0)),
    drivable: !!fields.drivable,
    parties_agree: !!fields.parties_agree,
    vehicles: [],
  };
  const plate = (fields.plate || '').trim();
  const insurer = (fields.insurer || '').trim();
  if (plate || insurer) report.vehicles.push({ plate, insurer });
  const note = (fields.note || '').trim();
  if (note) report.note = note;
  return report;
}
