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

const i18n = await import(pathToFileURL(join(webRoot, 'i18n.js')).href);
const { placeLabels, overlaps } = await import(pathToFileURL(join(webRoot, 'labels.js')).href);
const model = await import(pathToFileURL(join(webRoot, 'model.js')).href);

test('one string table per language: the same keys and the same placeholders in each', () => {
  const zh = i18n.STRINGS['zh-CN'];
  const en = i18n.STRINGS.en;
  assert.deepEqual(Object.keys(en).sort(), Object.keys(zh).sort(), 'every key in both tables');
  const holes = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
  for (const k of Object.keys(zh)) assert.deepEqual(holes(en[k]), holes(zh[k]), `placeholders of ${k}`);
  // Every Chinese string has Chinese in it (a forgotten English one would not).
  const latinOnly = Object.entries(zh).filter(([k, v]) => !/[\u4e00-\u9fff]/.test(v) && !['lang.switch'].includes(k));
  assert.deepEqual(latinOnly, [], 'Chinese table entries without Chinese');
  // Chinese by default, a dispatcher's words for the wire's words.
  assert.equal(i18n.getLang(), 'zh-CN');
  assert.equal(i18n.word('state', 'dispatching'), '待派');
  assert.equal(i18n.word('state', 'closed'), '结案');
  assert.equal(i18n.word('task', 'landing_zone'), '降落点');
  assert.equal(i18n.t('toast.assignSent', { unit: '渝警保01', incident: 'I-1' }), '派警 渝警保01 → I-1 已发出');
  // Every wire word the console shows has its entry in both languages.
  const wire = {
    state: ['reported', 'remote', 'dispatching', 'assigned', 'en_route', 'on_scene', 'closed', 'cancelled'],
    astate: ['assigned', 'en_route', 'on_scene', 'cleared', 'declined', 'lapsed', 'cancelled'],
    ustate: model.UNIT_STATUSES,
    sev: ['minor', 'injury', 'critical'],
    kind: ['moto', 'car', 'heli'],
    task: ['scene', 'landing_zone', 'secure_lz'],
    ev: ['reported', 'remote', 'dispatching', 'assigned', 'acked', 'declined', 'lapsed', 'cancelled', 'arrived', 'cleared', 'escalated', 'liability', 'paged', 'closed', ...model.RESCUE_STEPS],
    clock: ['liability', 'claim', 'airborne', 'landed', 'hospital'],
    why: ['chosen', 'farther', 'busy', 'stale', 'declined', 'off_duty', 'unreachable'],
    signal: ['impossible_travel', 'repeat_plate', 'repeat_pair'],
  };
  for (const [group, values] of Object.entries(wire)) {
    for (const v of values) {
      assert.ok(zh[`${group}.${v}`] && en[`${group}.${v}`], `${group}.${v} in both tables`);
    }
  }
  assert.equal(i18n.word('state', 'some_future_state'), 'some_future_state', 'an unknown word passes through');
  // The server's reasons for ending an assignment, in a dispatcher's words.
  assert.equal(i18n.reasonText('cancelled by dispatcher'), '调度员撤销');
  assert.equal(i18n.reasonText('no ack within 30 s'), '30 秒内未确认');
  assert.equal(i18n.reasonText('replaced by M020'), '由 M020 替换');
  assert.equal(i18n.reasonText('reassigned to I-000009'), '改派至 I-000009');
  assert.equal(i18n.reasonText('flat tyre'), 'flat tyre', 'a crew\'s own words as they came');
  assert.equal(i18n.reasonText(null), '');
  i18n.setLang('en');
  assert.equal(i18n.word('state', 'dispatching'), 'dispatching');
  assert.equal(i18n.setLang('fr'), 'zh-CN', 'an unknown language falls back to Chinese');
});

test('labels never collide, most important first, and stay inside the view', () => {
  // 300 units piled on a 400 x 300 px city view, as the demo at city zoom.
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const items = Array.from({ length: 300 }, (_, i) => ({ x: 20 + rnd() * 360, y: 20 + rnd() * 260, w: 50, h: 14, r: 3, id: i }));
  const kept = placeLabels(items, { bounds: { w: 400, h: 300 } });
  assert.ok(kept.length > 10 && kept.length < 300, `some labels fit, not all (${kept.length})`);
  for (let i = 0; i < kept.length; i++) {
    const a = kept[i];
    assert.ok(a.x >= 0 && a.y >= 0 && a.x + a.w <= 400 && a.y + a.h <= 300, 'inside the view');
    for (let j = i + 1; j < kept.length; j++) assert.ok(!overlaps(a, kept[j]), `labels ${a.item.id} and ${kept[j].item.id} overlap`);
    // No label covers another unit's mark.
    for (const it of items) {
      if (it === a.item) continue;
      assert.ok(!overlaps(a, { x: it.x - it.r, y: it.y - it.r, w: 2 * it.r, h: 2 * it.r }), `label ${a.item.id} covers unit ${it.id}`);
    }
  }
  // Two units at one spot: only the first (the more important) is labelled... but both
  // would fit on either side when apart.
  const twin = placeLabels([{ x: 100, y: 100, w: 40, h: 14, r: 3, id: 'a' }, { x: 100, y: 100, w: 40, h: 14, r: 3, id: 'b' }]);
  assert.deepEqual(twin.map((k) => k.item.id), ['a', 'b'], 'the second goes to the other side');
  const crowd = Array.from({ length: 6 }, (_, i) => ({ x: 100, y: 100, w: 40, h: 14, r: 3, id: i }));
  const crowded = placeLabels(crowd);
  assert.deepEqual(crowded.map((k) => k.item.id), [0, 1], 'right and left; above and below would touch them: hover only');
  // Sparse units all get labels.
  const sparse = Array.from({ length: 10 }, (_, i) => ({ x: 30 + i * 100, y: 50, w: 50, h: 14, r: 3 }));
  assert.equal(placeLabels(sparse).length, 10);
});

test('the policy comes from the server config, today\'s defaults without one', () => {
  assert.equal(model.policyFrom(undefined).ackWithinMs, 30_000);
  assert.equal(model.policyFrom(null).remoteLiabilityMs, 300_000);
  const p = model.policyFrom({ ack_within_s: 45, stale_after_s: 90, remote_liability_s: 120, claim_paid_within_s: 600, tiles: 'https://tiles.example/{z}/{x}/{y}.png' });
  assert.deepEqual([p.ackWithinMs, p.staleAfterMs, p.remoteLiabilityMs, p.claimPaidWithinMs], [45_000, 90_000, 120_000, 600_000]);
  assert.equal(p.tiles, 'https://tiles.example/{z}/{x}/{y}.png');
  assert.equal(model.policyFrom({ ack_within_s: 'x', tiles: 'javascript:alert(1)' }).ackWithinMs, 30_000);
  assert.equal(model.policyFrom({ tiles: 'javascript:alert(1)' }).tiles, null, 'only http(s) or a path');
  // The store takes it from the snapshot, and the clocks count with it.
  const s = new Store();
  s.apply({ type: 'snapshot', units: [], incidents: [], config: { ack_within_s: 10, remote_liability_s: 60 } });
  const paged = { id: 'P', state: 'assigned', reported_ts: T, assignments: [{ assignment: 'a', unit: 'M', state: 'assigned', assigned_ts: T }] };
  assert.equal(incidentClocks(paged, T + 11_000, s.policy).ackWait.overdue, true, 'ack window from the server: 10 s');
  assert.equal(incidentClocks(paged, T + 11_000).ackWait.overdue, false, 'the default: 30 s');
  const remote = { id: 'R', state: 'remote', reported_ts: T, assignments: [] };
  assert.equal(incidentClocks(remote, T + 61_000, s.policy).remote.overdue, true);
  s.apply({ type: 'snapshot', units: [], incidents: [] });
  assert.equal(s.policy.ackWithinMs, 30_000, 'a snapshot without config: the defaults again');
});

test('server clocks: remaining, overdue, done; they join the incident\'s slack', () => {
  const inc = { id: 'I', state: 'on_scene', reported_ts: T, assignments: [], clocks: [
    { clock: 'airborne', start_ts: T, due_ts: T + 600_000, done_ts: T + 300_000, overdue: false },
    { clock: 'landed', start_ts: T, due_ts: T + 1_200_000, done_ts: null, overdue: false },
    { clock: 'hospital', start_ts: T, due_ts: T + 3_600_000, done_ts: null, overdue: true },
    { bogus: 1 },
  ] };
  const cs = model.serverClocks(inc, T + 1_000_000);
  assert.deepEqual(cs.map((c) => [c.clock, c.done, c.overdue]), [['airborne', true, false], ['landed', false, false], ['hospital', false, true]]);
  assert.equal(cs[0].remainingMs, 300_000, 'done: time it had left when done');
  assert.equal(cs[1].remainingMs, 200_000);
  let c = incidentClocks(inc, T + 1_000_000);
  assert.equal(c.overdue, true, 'the server says the hospital clock is late');
  inc.clocks[2].overdue = false;
  c = incidentClocks(inc, T + 1_000_000);
  assert.equal(c.overdue, false);
  assert.equal(c.slackMs, 200_000);
  c = incidentClocks(inc, T + 1_300_000);
  assert.equal(c.overdue, true, 'our clock sees landed run out');
});

test('air rescue: the chain in order with each step\'s time; task lines go to the landing zone', () => {
  assert.equal(model.rescueChain({ rescue: null }), null);
  const lz = { id: 'LZ1', name: '城口停机坪', lat: 31.9, lon: 108.6 };
  const inc = { id: 'I', lat: 31.95, lon: 108.65, rescue: { target: 'landing_zone', landing_zone: lz, hospital: { id: 'H1', name: '城口县人民医院' },
    steps: [{ step: 'heli_called', ts: T + 10, actor: 'system' }, { step: 'hospital_notified', ts: T + 5, actor: 'system' }, { step: 'airborne', ts: T + 200, actor: 'unit:H1' }, { step: 'new_step', ts: T + 300 }] } };
  const chain = model.rescueChain(inc);
  assert.equal(chain.target, 'landing_zone');
  assert.deepEqual(chain.steps.map((s) => s.step), [...model.RESCUE_STEPS, 'new_step']);
  assert.deepEqual(chain.steps.slice(0, 4).map((s) => s.ts), [T + 5, T + 10, T + 200, null]);
  // Each stage's clock beside the step that ends it.
  const timed = model.rescueChain({ ...inc, clocks: [{ clock: 'airborne', start_ts: T + 10, due_ts: T + 610, done_ts: T + 200, overdue: false },
    { clock: 'landed', start_ts: T + 10, due_ts: T + 1000, done_ts: null, overdue: false }] }, T + 2000);
  const byStep = Object.fromEntries(timed.steps.map((s) => [s.step, s.clock]));
  assert.equal(byStep.airborne.done, true);
  assert.equal(byStep.landed.overdue, true, 'landed is late by our clock');
  assert.equal(byStep.transferred, null, 'no hospital clock sent');
  assert.equal(byStep.heli_called, null);
  const scene = model.rescueChain({ rescue: { target: 'scene', steps: [] } });
  assert.ok(!scene.steps.some((s) => s.step === 'lz_secured'), 'no landing zone to secure when flying to the scene');
  // Lines: the helicopter and the securing team to the landing zone, the rest to the scene.
  assert.deepEqual(model.taskTarget(inc, { task: 'landing_zone', lat: 31.9, lon: 108.6 }), { lat: 31.9, lon: 108.6 });
  assert.equal(model.taskTarget(inc, { task: 'secure_lz' }), lz, 'from rescue.landing_zone when the assignment has no lat/lon');
  assert.equal(model.taskTarget(inc, { task: 'scene', lat: 1, lon: 2 }), inc);
  assert.equal(model.taskTarget({ id: 'J' }, { task: 'landing_zone' }).id, 'J', 'nothing known: the incident');
});

test('alerts: one per key, dismissed ones stay quiet, resolved ones may come back, bounded', () => {
  const a = new model.Alerts(3);
  assert.equal(a.raise('overdue:I1:liability', { kind: 'overdue', ts: 1 }), true);
  assert.equal(a.raise('overdue:I1:liability', { kind: 'overdue', ts: 2 }), false, 'server and local clock raise it once');
  a.raise('stale:M1', { kind: 'stale' });
  assert.deepEqual(a.active().map((x) => x.key), ['stale:M1', 'overdue:I1:liability'], 'newest first');
  a.dismiss('stale:M1');
  assert.equal(a.raise('stale:M1', { kind: 'stale' }), false, 'dismissed stays quiet');
  a.resolve('stale:M1');
  assert.equal(a.raise('stale:M1', { kind: 'stale' }), true, 'resolved, then stale again: a new alert');
  a.raise('conn', { kind: 'conn' });
  a.dismiss('conn');
  assert.equal(a.raise('conn', { kind: 'conn', again: true }), true, 'a connection lost again shows again');
  a.raise('hazard:1', { kind: 'hazard' });
  a.raise('hazard:2', { kind: 'hazard' });
  assert.equal(a.items.size, 3, 'bounded');
  a.dismissAll();
  assert.equal(a.active().length, 0);
});

test('hazards and alerts from the console feed go through the store', () => {
  const s = new Store();
  const seen = [];
  s.on((what, obj) => seen.push([what, obj.hazard ?? obj.alert ?? obj.id ?? null]));
  s.apply({ type: 'snapshot', units: [], incidents: [], hazards: [{ hazard: 'HZ-1', lat: 30, lon: 107, kind: 'landslide', state: 'open' }] });
  assert.deepEqual([...s.hazards.keys()], ['HZ-1']);
  assert.equal(s.applyHazard({ hazard: 'HZ-2', lat: 30.1, lon: 107.1, kind: 'flood' }), true);
  assert.equal(s.applyHazard({ hazard: 'HZ-2', state: 'cleared', cleared_ts: T }), false, 'clearing is not new');
  assert.equal(s.hazards.get('HZ-2').kind, 'flood', 'a clearing keeps what was known');
  assert.equal(s.hazards.get('HZ-2').state, 'cleared');
  assert.equal(s.apply({ type: 'alert', alert: 'overdue', incident: 'I1', clock: 'claim', due_ts: T, ts: T }), true);
  assert.deepEqual(seen.map((e) => e[0]), ['snapshot', 'hazard', 'hazard', 'alert']);
  s.apply({ type: 'snapshot', units: [], incidents: [] });
  assert.equal(s.hazards.size, 0, 'a snapshot replaces the hazards too');
});

test('history: the query names every filter; the same filters applied to what came back', () => {
  const from = Date.UTC(2026, 10, 20);
  const to = Date.UTC(2026, 10, 27);
  const q = new URLSearchParams(model.historyQuery({ from, to, district: '渝中区', severity: 'injury', plate: ' 渝A1 ', limit: 25, before: 'I-000100' }));
  assert.deepEqual(Object.fromEntries(q), { state: 'all', limit: '25', before: 'I-000100', from: String(from), to: String(to), district: '渝中区', severity: 'injury', plate: '渝A1' });
  const csv = new URLSearchParams(model.historyQuery({ state: 'closed', plate: '渝A1', before: 'I-9' }, { csv: true }));
  assert.deepEqual(Object.fromEntries(csv), { state: 'closed', plate: '渝A1', format: 'csv' }, 'the export takes every match, no page');
  const inc = { id: 'I', state: 'closed', severity: 'injury', district: '渝中区', reported_ts: from + 1000, vehicles: [{ plate: '渝A12345' }] };
  assert.equal(model.matchesHistory(inc, { state: 'all', severity: 'injury', district: '渝中区', from, to, plate: 'a123' }), true);
  assert.equal(model.matchesHistory(inc, { state: 'cancelled' }), false);
  assert.equal(model.matchesHistory(inc, { severity: 'minor' }), false);
  assert.equal(model.matchesHistory(inc, { district: '江北区' }), false);
  assert.equal(model.matchesHistory(inc, { to: from }), false);
  assert.equal(model.matchesHistory(inc, { to: from + 1000, from: from + 1000 }), true, 'from and to are inclusive');
  assert.equal(model.matchesHistory(inc, { from: from + 2000 }), false);
  assert.equal(model.matchesHistory(inc, { plate: '渝B' }), false);
});

test('replay: the span of an incident and a track read at any time', () => {
  const inc = { reported_ts: T, closed_ts: T + 600_000, assignments: [{ assigned_ts: T + 1000, ended_ts: T + 500_000 }] };
  assert.deepEqual(model.replaySpan(inc, T + 10_000_000), { from: T - 60_000, to: T + 660_000 });
  assert.deepEqual(model.replaySpan({ reported_ts: T, assignments: [] }, T + 30_000), { from: T - 60_000, to: T + 30_000 }, 'an open one: up to now');
  const track = { type: 'Feature', properties: { unit: 'M1', times: [T, T + 10_000, T + 20_000] },
    geometry: { type: 'LineString', coordinates: [[106.0, 29.0], [106.1, 29.0], [106.1, 29.2]] } };
  assert.equal(model.trackAt(track, T - 1), null, 'before the first fix');
  assert.deepEqual(model.trackAt(track, T), { lat: 29.0, lon: 106.0 });
  const mid = model.trackAt(track, T + 5_000);
  assert.ok(Math.abs(mid.lon - 106.05) < 1e-9 && mid.lat === 29.0);
  const late = model.trackAt(track, T + 15_000);
  assert.ok(Math.abs(late.lat - 29.1) < 1e-9 && Math.abs(late.lon - 106.1) < 1e-9);
  assert.deepEqual(model.trackAt(track, T + 99_000), { lat: 29.2, lon: 106.1 }, 'after the last fix: the last');
  assert.equal(model.trackAt({ geometry: { coordinates: [] }, properties: { times: [] } }, T), null);
});

test('servers for failover: this page\'s first, then the others, junk dropped', () => {
  assert.deepEqual(model.parseServers('', 'a:8080'), ['a:8080']);
  assert.deepEqual(model.parseServers('b:8081, a:8080,b:8081,evil/x,:9', 'a:8080'), ['b:8081', 'a:8080'], 'listed order kept when the page is listed');
  assert.deepEqual(model.parseServers('127.0.0.1:1,[::1]:2', 'h:3'), ['h:3', '127.0.0.1:1', '[::1]:2']);
});

test('CSV export: a header, one row per incident, quoting, no formulas', () => {
  const rows = [
    { id: 'I-1', report_id: 'r1', state: 'closed', severity: 'injury', district: '渝中区', lat: 29.5, lon: 106.5, reported_ts: T,
      closed_ts: T + 60_000, injured: 1, drivable: false, parties_agree: false, vehicles: [{ plate: '渝A12345', insurer: 'PICC' }, { plate: '渝B1' }],
      at_fault: '渝A12345', note: 'two cars, "rear-end"\nsecond line', assignments: [{ unit: 'M1' }, { unit: 'C1' }, { unit: 'M1' }] },
    { id: 'I-2', state: 'remote', severity: 'minor', note: '=HYPERLINK("x")', vehicles: [] },
  ];
  const csv = model.incidentsToCsv(rows, (ts) => `t${ts - T}`);
  assert.ok(csv.startsWith('\ufeff'), 'byte order mark');
  const lines = csv.slice(1).split('\r\n');
  assert.equal(lines[0], model.CSV_COLUMNS.join(','));
  assert.equal(lines[1], `I-1,r1,closed,injury,渝中区,29.5,106.5,t0,${T},t60000,1,false,false,渝A12345 渝B1,PICC,渝A12345,M1 C1,"two cars, ""rear-end""\nsecond line"`);
  assert.ok(lines[2].endsWith(`,"'=HYPERLINK(""x"")"`), lines[2]);
  assert.equal(lines[3], '', 'ends with a line break');
});
