// The console's state and the arithmetic on it: no DOM, no Leaflet, so node can test it.
// Names follow wire-contract.md sections 4 to 7.

export const SEVERITY_RANK = { minor: 0, injury: 1, critical: 2 };
export const ACTIVE_ASSIGNMENT = new Set(['assigned', 'en_route', 'on_scene']);
export const CLOSED_STATES = new Set(['closed', 'cancelled']);
export const UNIT_STATUSES = ['available', 'assigned', 'en_route', 'on_scene', 'stale', 'off_duty'];

// Defaults of the engine's policy (contract section 7); the console only uses them to
// say when something is late, never to decide anything. The server's own numbers come in
// the snapshot's `config` (policyFrom); these stand in for a server that sends none.
export const POLICY = Object.freeze({
  ackWithinMs: 30_000,
  remoteLiabilityMs: 300_000,
  // A report still without a unit after this long is flagged: there is no unit to send.
  assignTargetMs: 60_000,
  staleAfterMs: 60_000,
  claimPaidWithinMs: 900_000,
});

// The snapshot's config ({"ack_within_s", "stale_after_s", "remote_liability_s",
// "claim_paid_within_s", ...}) as the console's policy; a missing or bad field keeps
// today's default.
export function policyFrom(config) {
  const sec = (v, dflt) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v * 1000 : dflt);
  const c = config && typeof config === 'object' ? config : {};
  return Object.freeze({
    ackWithinMs: sec(c.ack_within_s, POLICY.ackWithinMs),
    remoteLiabilityMs: sec(c.remote_liability_s, POLICY.remoteLiabilityMs),
    assignTargetMs: POLICY.assignTargetMs,
    staleAfterMs: sec(c.stale_after_s, POLICY.staleAfterMs),
    claimPaidWithinMs: sec(c.claim_paid_within_s, POLICY.claimPaidWithinMs),
    tiles: typeof c.tiles === 'string' && /^https?:\/\/|^\//.test(c.tiles) ? c.tiles : null,
  });
}

// Where an assignment sends its unit: a helicopter with task landing_zone and the team
// with task secure_lz go to the landing zone (the assignment's own lat/lon, else the
// incident's rescue.landing_zone); everything else goes to the incident.
export function taskTarget(inc, a) {
  if (a && (a.task === 'landing_zone' || a.task === 'secure_lz')) {
    if (typeof a.lat === 'number' && typeof a.lon === 'number') return { lat: a.lat, lon: a.lon };
    const lz = inc.rescue?.landing_zone;
    if (lz && typeof lz.lat === 'number' && typeof lz.lon === 'number') return lz;
  }
  return inc;
}

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
    this.config = null;
    this.policy = POLICY;
    this.hazards = new Map(); // hazard id -> hazard, open and cleared (cleared are drawn faded)
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
    this.config = msg.config && typeof msg.config === 'object' ? msg.config : null;
    this.policy = policyFrom(this.config);
    this.hazards.clear();
    for (const h of msg.hazards || []) if (h && h.hazard != null) this.hazards.set(String(h.hazard), h);
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

  // A hazard a station reported, or its clearing: returns whether it is new to us.
  applyHazard(h) {
    if (h == null || h.hazard == null) return false;
    const id = String(h.hazard);
    const isNew = !this.hazards.has(id);
    this.hazards.set(id, { ...(this.hazards.get(id) || {}), ...h });
    this.emit('hazard', this.hazards.get(id));
    return isNew;
  }

  // Dispatches one message from /ws/console; returns false for types it does not hold.
  apply(msg) {
    switch (msg.type) {
      case 'snapshot': this.applySnapshot(msg); return true;
      case 'unit': this.applyUnit(msg); return true;
      case 'incident': this.applyIncident(msg); return true;
      case 'hazard': this.applyHazard(msg); return true;
      case 'alert': this.emit('alert', msg); return true;
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
  held._prevStatus = held.status;
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
  // The server's own clocks (liability, claim, air rescue stages), when it sends them.
  out.clocks = serverClocks(inc, now);
  for (const c of out.clocks) {
    if (c.done) continue;
    out.slackMs = Math.min(out.slackMs, c.overdue ? Math.min(-1, c.remainingMs) : c.remainingMs);
  }
  out.overdue = out.slackMs < 0;
  return out;
}

// inc.clocks ([{clock, start_ts, due_ts, done_ts, overdue}]) read at `now`: remainingMs
// until due (negative once late), done when done_ts is set, overdue as the server says or
// as our clock sees it.
export function serverClocks(inc, now) {
  const out = [];
  for (const c of Array.isArray(inc?.clocks) ? inc.clocks : []) {
    if (!c || typeof c.clock !== 'string') continue;
    const done = c.done_ts != null;
    const due = typeof c.due_ts === 'number' ? c.due_ts : null;
    const end = done ? c.done_ts : now;
    const remainingMs = due == null ? Infinity : due - end;
    out.push({ clock: c.clock, startTs: c.start_ts ?? null, dueTs: due, doneTs: c.done_ts ?? null, done,
      remainingMs, overdue: !!c.overdue || remainingMs < 0 });
  }
  return out;
}

// The air rescue chain in Chongqing's order, each step with when and by whom (null when
// not yet done). Steps the server adds later are appended after the known ones.
export const RESCUE_STEPS = ['hospital_notified', 'heli_called', 'airborne', 'lz_secured', 'landed', 'patient_loaded', 'transferred'];
// The service-level clock that ends at a step (call -> airborne, -> landed, -> hospital).
export const STEP_CLOCK = { airborne: 'airborne', landed: 'landed', transferred: 'hospital' };
export function rescueChain(inc, now = Date.now()) {
  const r = inc?.rescue;
  if (!r || typeof r !== 'object') return null;
  const clocks = new Map(serverClocks(inc, now).map((c) => [c.clock, c]));
  const seen = new Map();
  for (const s of Array.isArray(r.steps) ? r.steps : []) if (s && typeof s.step === 'string' && !seen.has(s.step)) seen.set(s.step, s);
  const names = RESCUE_STEPS.filter((n) => n !== 'lz_secured' || r.target !== 'scene');
  for (const n of seen.keys()) if (!names.includes(n)) names.push(n);
  return {
    target: r.target === 'scene' ? 'scene' : 'landing_zone',
    landingZone: r.landing_zone || null,
    hospital: r.hospital || null,
    steps: names.map((n) => ({ step: n, ts: seen.get(n)?.ts ?? null, actor: seen.get(n)?.actor ?? null,
      clock: (STEP_CLOCK[n] && clocks.get(STEP_CLOCK[n])) || null })),
  };
}

// Alerts on the console: each has a key, so the same alert raised twice (by the server
// and by our own clock) shows once; a bounded list, newest first.
export class Alerts {
  constructor(max = 200) {
    this.max = max;
    this.items = new Map(); // key -> alert
    this.seq = 0;
  }

  // Returns true when the alert is new (or was dismissed and is raised again later).
  raise(key, alert) {
    const held = this.items.get(key);
    // Showing and unresolved: the same alert again says nothing new. Dismissed: it stays
    // quiet unless it may come again (a connection lost a second time). Resolved: anew.
    if (held && !held.dismissed && !held.resolved) return false;
    if (held && held.dismissed && !held.resolved && !alert.again) return false;
    this.items.delete(key);
    this.items.set(key, { key, seq: ++this.seq, dismissed: false, resolved: false, ...alert });
    while (this.items.size > this.max) this.items.delete(this.items.keys().next().value);
    return true;
  }

  resolve(key) {
    const a = this.items.get(key);
    if (a) a.resolved = true;
    return !!a;
  }

  dismiss(key) {
    const a = this.items.get(key);
    if (a) a.dismissed = true;
  }

  dismissAll() {
    for (const a of this.items.values()) a.dismissed = true;
  }

  active() {
    return [...this.items.values()].filter((a) => !a.dismissed).sort((a, b) => b.seq - a.seq);
  }
}

// History search (GET /api/incidents): the query string for filters
// {from, to (ms), district, severity, state, plate, limit, before}, state=all unless one is
// chosen. csv: the export link's query.
export function historyQuery(f = {}, { csv = false } = {}) {
  const q = new URLSearchParams();
  q.set('state', f.state || 'all');
  if (!csv) q.set('limit', String(f.limit || 50));
  if (f.before && !csv) q.set('before', f.before);
  if (Number.isFinite(f.from)) q.set('from', String(f.from));
  if (Number.isFinite(f.to)) q.set('to', String(f.to));
  for (const k of ['district', 'severity', 'plate']) if (f[k]) q.set(k, String(f[k]).trim());
  if (csv) q.set('format', 'csv');
  return q.toString();
}

// The same filters applied here to what came back: a server that does not filter yet
// still shows only what was asked for.
export function matchesHistory(inc, f = {}) {
  if (f.state && f.state !== 'all' && inc.state !== f.state) return false;
  if (f.severity && inc.severity !== f.severity) return false;
  if (f.district && inc.district !== f.district) return false;
  if (Number.isFinite(f.from) && !(inc.reported_ts >= f.from)) return false;
  if (Number.isFinite(f.to) && !(inc.reported_ts <= f.to)) return false; // inclusive, as the server's
  if (f.plate) {
    const p = String(f.plate).trim().toUpperCase();
    if (!(inc.vehicles || []).some((v) => String(v.plate || '').toUpperCase().includes(p))) return false;
  }
  return true;
}

// The time span worth replaying for an incident: from its report (or first assignment)
// to its close (or the last end of an assignment), with a minute either side.
export function replaySpan(inc, now = Date.now()) {
  const times = [inc.reported_ts];
  for (const a of inc.assignments || []) times.push(a.assigned_ts, a.ended_ts, a.cleared_ts, a.arrived_ts);
  times.push(inc.closed_ts);
  const ts = times.filter((x) => typeof x === 'number');
  if (!ts.length) return null;
  const from = Math.min(...ts) - 60_000;
  // Still open: up to now; closed: a minute past its last event.
  const to = inc.closed_ts == null ? now : Math.min(now, Math.max(...ts) + 60_000);
  return { from, to };
}

// A track (GeoJSON Feature LineString with properties.times) at time t: the point
// interpolated between the fixes around t; null before the first fix; the last fix after.
export function trackAt(feature, t) {
  const coords = feature?.geometry?.coordinates || [];
  const times = feature?.properties?.times || [];
  const n = Math.min(coords.length, times.length);
  if (!n || t < times[0]) return null;
  if (t >= times[n - 1]) return { lat: coords[n - 1][1], lon: coords[n - 1][0] };
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (times[mid] <= t) lo = mid;
    else hi = mid;
  }
  const f = times[hi] === times[lo] ? 0 : (t - times[lo]) / (times[hi] - times[lo]);
  return {
    lat: coords[lo][1] + f * (coords[hi][1] - coords[lo][1]),
    lon: coords[lo][0] + f * (coords[hi][0] - coords[lo][0]),
  };
}

// ?servers=host:port,host:port: the servers to try in turn (this page's own first when
// not listed). Anything that is not host[:port] is dropped.
export function parseServers(param, own) {
  const list = [];
  for (const raw of String(param || '').split(',')) {
    const s = raw.trim();
    if (/^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(s) && !list.includes(s)) list.push(s);
  }
  if (own && !list.includes(own)) list.unshift(own);
  return list;
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

// Incidents as CSV (RFC 4180, UTF-8 with a byte order mark so spreadsheet programs read
// the Chinese right): what the export link gives when the server does not make CSV itself.
// Cells that a spreadsheet would run as a formula (= + - @ first) get a leading quote.
export const CSV_COLUMNS = ['id', 'report_id', 'state', 'severity', 'district', 'lat', 'lon', 'reported', 'reported_ts',
  'closed', 'injured', 'drivable', 'parties_agree', 'plates', 'insurers', 'at_fault', 'units', 'note'];
export function incidentsToCsv(rows, fmtTime = (ts) => new Date(ts).toISOString()) {
  const cell = (v) => {
    let s = v == null ? '' : String(v);
    if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const lines = [CSV_COLUMNS.join(',')];
  for (const inc of rows) {
    const vehicles = Array.isArray(inc.vehicles) ? inc.vehicles : [];
    const units = [...new Set((inc.assignments || []).map((a) => a.unit))];
    lines.push([
      inc.id, inc.report_id, inc.state, inc.severity, inc.district, inc.lat, inc.lon,
      inc.reported_ts != null ? fmtTime(inc.reported_ts) : '', inc.reported_ts,
      inc.closed_ts != null ? fmtTime(inc.closed_ts) : '', inc.injured,
      inc.drivable, inc.parties_agree, vehicles.map((v) => v.plate).join(' '),
      vehicles.map((v) => v.insurer || '').join(' ').trim(), inc.at_fault, units.join(' '), inc.note,
    ].map(cell).join(','));
  }
  return `\ufeff${lines.join('\r\n')}\r\n`;
}
