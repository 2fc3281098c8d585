// The console's state and clocks (web/model.js), in node without a browser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const webRoot = resolve(process.env.DISPATCH_WEB_ROOT || join(here, '../../web'));
const {
  Store, POLICY, backoffMs, buildReport, candidatesFor, distanceM, etaSeconds, fmtDuration,
  incidentClocks, makeReportId, sortByUrgency,
} = await import(pathToFileURL(join(webRoot, 'model.js')).href);

const unit = (id, kind, status, lat, lon) => ({ id, kind, status, lat, lon, ts: 1, callsign: `cs-${id}` });
const T = 1_764_300_000_000;

test('distance and ETA follow the contract', () => {
  // One degree of latitude on the IUGG mean sphere.
  assert.ok(Math.abs(distanceM(29, 106, 30, 106) - 111_195) < 1);
  // 10 km: ground 10 000 x 1.3 / (30 km/h) = 1560 s; air 180 + 10 000 / (200 km/h) = 360 s.
  assert.ok(Math.abs(etaSeconds('moto', 10_000) - 1560) < 1e-9);
  assert.ok(Math.abs(etaSeconds('car', 10_000) - 1560) < 1e-9);
  assert.ok(Math.abs(etaSeconds('heli', 10_000) - 360) < 1e-9);
});

test('a snapshot replaces everything and updates are applied in place', () => {
  const s = new Store();
  const events = [];
  s.on((what, obj) => events.push([what, obj.id]));
  s.apply({ type: 'snapshot', units: [unit('A', 'moto', 'available', 29.5, 106.5), unit('B', 'car', 'available', null, null)],
    incidents: [{ id: 'I1', state: 'assigned' }, { id: 'I2', state: 'closed' }] });
  assert.equal(s.units.size, 2);
  assert.deepEqual([...s.incidents.keys()], ['I1'], 'closed incidents are not held');
  const a = s.units.get('A');
  a._pz = 12; // a layer cached A's projection
  s.apply({ type: 'unit', ...unit('A', 'moto', 'en_route', 29.6, 106.5) });
  assert.equal(s.units.get('A'), a, 'the same object, updated in place');
  assert.equal(a.status, 'en_route');
  assert.equal(a._pz, -1, 'a move drops the cached projection');
  a._pz = 12;
  s.apply({ type: 'unit', ...unit('A', 'moto', 'on_scene', 29.6, 106.5) });
  assert.equal(a._pz, 12, 'a status change alone keeps it');
  // A reconnect's snapshot: whatever it does not hold is gone, nothing is doubled.
  s.apply({ type: 'snapshot', units: [unit('A', 'moto', 'available', 29.5, 106.5)], incidents: [{ id: 'I3', state: 'remote' }] });
  assert.deepEqual([...s.units.keys()], ['A']);
  assert.deepEqual([...s.incidents.keys()], ['I3']);
  assert.equal(s.snapshots, 2);
  s.apply({ type: 'incident', id: 'I3', state: 'closed' });
  assert.equal(s.incidents.size, 0);
  assert.equal(s.apply({ type: 'accepted', id: 'r', incident: 'I9' }), false);
  // The snapshot's ts sets the clock the console counts with.
  s.applySnapshot({ type: 'snapshot', ts: 5_000, units: [], incidents: [] }, 2_000);
  assert.equal(s.offsetMs, 3_000);
  assert.ok(Math.abs(s.now() - (Date.now() + 3_000)) < 1_000);
  assert.deepEqual(events.map((e) => e[0]), ['snapshot', 'unit', 'unit', 'snapshot', 'incident', 'snapshot']);
});

test('clocks: waiting for a unit, waiting for an ack, the remote countdown', () => {
  const waiting = { id: 'W', state: 'dispatching', severity: 'injury', reported_ts: T, assignments: [] };
  let c = incidentClocks(waiting, T + 45_000);
  assert.equal(c.sinceReport, 45_000);
  assert.deepEqual(c.toAssign, { ms: 45_000, running: true });
  assert.equal(c.overdue, false);
  c = incidentClocks(waiting, T + POLICY.assignTargetMs + 1);
  assert.equal(c.overdue, true);

  const paged = { id: 'P', state: 'assigned', severity: 'minor', reported_ts: T,
    assignments: [{ assignment: 'a1', unit: 'M1', state: 'assigned', assigned_ts: T + 2_000, acked_ts: null }] };
  c = incidentClocks(paged, T + 20_000);
  assert.deepEqual(c.toAssign, { ms: 2_000, running: false });
  assert.equal(c.ackWait.ms, 18_000);
  assert.equal(c.ackWait.unit, 'M1');
  assert.equal(c.ackWait.overdue, false);
  assert.equal(c.slackMs, 12_000);
  c = incidentClocks(paged, T + 33_000);
  assert.equal(c.ackWait.overdue, true);
  assert.equal(c.overdue, true);

  const acked = { ...paged, state: 'en_route', assignments: [{ ...paged.assignments[0], state: 'en_route', acked_ts: T + 9_000 }] };
  c = incidentClocks(acked, T + 600_000);
  assert.equal(c.ackWait, null);
  assert.equal(c.slackMs, Infinity);
  assert.equal(c.overdue, false);

  const remote = { id: 'R', state: 'remote', severity: 'minor', reported_ts: T, remote_deadline_ts: T + 300_000, assignments: [] };
  c = incidentClocks(remote, T + 120_000);
  assert.deepEqual(c.remote, { remainingMs: 180_000, overdue: false });
  assert.equal(c.toAssign, null);
  c = incidentClocks(remote, T + 301_000);
  assert.deepEqual(c.remote, { remainingMs: -1_000, overdue: true });
  // Without the server's deadline the contract's 300 s from the report is used.
  c = incidentClocks({ ...remote, remote_deadline_ts: undefined }, T + 100_000);
  assert.equal(c.remote.remainingMs, 200_000);
});

test('the queue puts late ones first, then running deadlines by severity, then the rest', () => {
  const now = T + 100_000;
  const list = [
    { id: 'onscene-critical', state: 'on_scene', severity: 'critical', reported_ts: T, assignments: [] },
    { id: 'remote-fresh', state: 'remote', severity: 'minor', reported_ts: T + 90_000, assignments: [] },
    { id: 'remote-late', state: 'remote', severity: 'minor', reported_ts: T - 250_000, assignments: [] },
    { id: 'waiting-critical', state: 'dispatching', severity: 'critical', reported_ts: T + 80_000, assignments: [] },
    { id: 'enroute-injury', state: 'en_route', severity: 'injury', reported_ts: T - 10_000, assignments: [] },
    { id: 'waiting-injury-late', state: 'dispatching', severity: 'injury', reported_ts: T, assignments: [] },
    { id: 'enroute-minor', state: 'en_route', severity: 'minor', reported_ts: T - 20_000, assignments: [] },
  ];
  const order = sortByUrgency(list, now).map((k) => k.inc.id);
  assert.deepEqual(order, [
    'waiting-injury-late', 'remote-late', // late: by severity
    'waiting-critical', 'remote-fresh', // deadlines running: by severity
    'onscene-critical', 'enroute-injury', 'enroute-minor', // no deadline: by severity
  ]);
});

test('candidates: assignable units only, nearest ETA first, a helicopter can beat a distant moto', () => {
  const inc = { id: 'I', lat: 29.56, lon: 106.55, state: 'assigned', severity: 'critical',
    assignments: [{ assignment: 'a', unit: 'M-busy', state: 'en_route' }] };
  const units = [
    unit('M-near', 'moto', 'available', 29.565, 106.55), // ~0.56 km
    unit('M-far', 'moto', 'available', 29.90, 106.55), // ~37.8 km: ground ~5900 s
    unit('H', 'heli', 'available', 29.90, 106.55), // same place by air: ~180 + 680 s
    unit('M-busy', 'moto', 'available', 29.561, 106.55), // already on this incident
    unit('M-off', 'moto', 'off_duty', 29.561, 106.55),
    unit('M-stale', 'moto', 'stale', 29.561, 106.55),
    unit('M-nopos', 'moto', 'available', null, null),
    unit('C', 'car', 'available', 29.57, 106.55),
  ];
  const list = candidatesFor(inc, units);
  assert.deepEqual(list.map((c) => c.unit.id), ['M-near', 'C', 'H', 'M-far']);
  assert.ok(Math.abs(list[0].etaS - etaSeconds('moto', list[0].distanceM)) < 1e-9);
  assert.deepEqual(candidatesFor(inc, units, { kinds: new Set(['car']) }).map((c) => c.unit.id), ['C']);
  assert.equal(candidatesFor(inc, units, { limit: 2 }).length, 2);
  // An override may take a busy unit, never an off-duty or stale one, nor one already here.
  const busy = [...units, unit('M-elsewhere', 'moto', 'en_route', 29.5601, 106.55)];
  assert.deepEqual(candidatesFor(inc, busy, { includeBusy: true, limit: 3 }).map((c) => c.unit.id), ['M-elsewhere', 'M-near', 'C']);
  assert.equal(candidatesFor(inc, busy).some((c) => c.unit.id === 'M-elsewhere'), false);
});

test('reports: ids do not repeat, fields as the contract names them', () => {
  assert.match(makeReportId(T, () => 0.5), /^console-1764300000000-[0-9a-z]{5,}$/);
  const ids = new Set(Array.from({ length: 1000 }, () => makeReportId(T)));
  assert.ok(ids.size > 990);
  const r = buildReport({ severity: 'minor', injured: '2', drivable: true, parties_agree: true, plate: ' 渝A12345 ', insurer: 'PICC', note: '' },
    29.1234567, 106.7654321, T, () => 0);
  assert.deepEqual(r, {
    type: 'report', id: 'console-1764300000000-00000', lat: 29.123457, lon: 106.765432, ts: T,
    severity: 'minor', injured: 2, drivable: true, parties_agree: true, vehicles: [{ plate: '渝A12345', insurer: 'PICC' }],
  });
  const bare = buildReport({ severity: 'critical', injured: '' }, 29, 106, T, () => 0);
  assert.deepEqual(bare.vehicles, []);
  assert.equal(bare.injured, 0);
  assert.equal('note' in bare, false);
});

test('back-off doubles to a ceiling, with jitter below it', () => {
  assert.equal(backoffMs(0, () => 0), 500);
  assert.equal(backoffMs(1, () => 0), 1000);
  assert.equal(backoffMs(4, () => 0), 8000);
  assert.equal(backoffMs(20, () => 0), 30_000);
  assert.equal(backoffMs(20, () => 1), 21_000);
  for (let i = 0; i < 100; i++) {
    const d = backoffMs(3);
    assert.ok(d >= 2800 && d <= 4000, `${d}`);
  }
});

test('durations read as m:ss or h:mm:ss', () => {
  assert.equal(fmtDuration(0), '0:00');
  assert.equal(fmtDuration(59_999), '0:59');
  assert.equal(fmtDuration(61_000), '1:01');
  assert.equal(fmtDuration(3_600_000 + 62_000), '1:01:02');
  assert.equal(fmtDuration(-5_000), '-0:05');
  assert.equal(fmtDuration(-400), '0:00');
});
