// The dispatch console in a real browser (Debian's chromium driven by playwright-core)
// against a real dispatchd with a small fleet on 127.0.0.1.
//
// Environment (set by ctest, see tests/CMakeLists.txt):
//   DISPATCHD           the dispatchd binary
//   DISPATCH_WEB_ROOT   the repository's web/ folder (with node_modules installed)
//   DISPATCH_ARTIFACTS  where the screenshot goes (default: a temp folder)
// Exits 77 (ctest's skip) when chromium or web/node_modules is missing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const webRoot = resolve(process.env.DISPATCH_WEB_ROOT || join(here, '../../web'));
const dispatchd = process.env.DISPATCHD;
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

const missing = [];
if (!existsSync(chromiumPath)) missing.push(chromiumPath);
if (!existsSync(join(webRoot, 'node_modules/playwright-core')) || !existsSync(join(webRoot, 'node_modules/ws')) ||
    !existsSync(join(webRoot, 'node_modules/leaflet'))) missing.push(`${webRoot}/node_modules (run npm ci in web/)`);
if (missing.length) {
  console.log(`SKIP: missing ${missing.join(', ')}`);
  process.exit(77);
}
if (!dispatchd || !existsSync(dispatchd)) {
  console.error(`DISPATCHD must name the dispatchd binary (got ${dispatchd})`);
  process.exit(1);
}

// What this dispatchd can do (its --help): the parts of the test for features a server
// does not have yet are skipped, said so in the output.
const serverHelp = spawnSync(dispatchd, ['--help'], { encoding: 'utf8' }).stdout || '';
const serverHas = (flag) => serverHelp.includes(flag);
// Air rescue v2 (the chain, the clocks): a helicopter not airborne in 3 s is overdue.
const rescueV2 = serverHas('--airborne-within');

const require = createRequire(join(webRoot, 'package.json'));
const { chromium } = require('playwright-core');
const WebSocket = require('ws');

const work = mkdtempSync(join(tmpdir(), 'console-test-'));
const artifacts = process.env.DISPATCH_ARTIFACTS || join(work, 'artifacts');
mkdirSync(artifacts, { recursive: true });

const CONSOLE_TOKEN = 'c-secret';
const GATEWAY_TOKEN = 'g-secret';

// A small fleet around Jiefangbei, Guanyinqiao and Nanping.
const FLEET = [
  { id: 'M001', kind: 'moto', callsign: '渝警保01', capcode: '1200001', lat: 29.5575, lon: 106.5770 },
  { id: 'M002', kind: 'moto', callsign: '渝警保02', capcode: '1200002', lat: 29.5750, lon: 106.5320 },
  { id: 'M003', kind: 'moto', callsign: '渝警保03', capcode: '1200003', lat: 29.5300, lon: 106.5700 },
  { id: 'M004', kind: 'moto', callsign: '渝警保04', capcode: '1200004', lat: 29.6000, lon: 106.5000 },
  { id: 'C001', kind: 'car', callsign: '渝保勘01', lat: 29.5500, lon: 106.5200 },
  { id: 'H1', kind: 'heli', callsign: '渝救援1', base: { lat: 29.7200, lon: 106.6400 }, lat: 29.7200, lon: 106.6400 },
];
// And a crowd of 40 teams within a few hundred metres of each other near Shapingba,
// far from every scene below, whose callsigns would pile up at city zoom.
const CROWD = [];
for (let i = 0; i < 40; i++) {
  const a = i * 2.399963; // golden angle: an even spiral
  const d = 0.0006 * Math.sqrt(i);
  CROWD.push({ id: `X${String(i + 1).padStart(2, '0')}`, kind: 'moto', callsign: `渝警保X${String(i + 1).padStart(2, '0')}`,
    lat: 29.6400 + d * Math.cos(a), lon: 106.4400 + d * Math.sin(a) * 1.15 });
}
FLEET.push(...CROWD);

writeFileSync(join(work, 'tokens.json'), JSON.stringify({
  tokens: [
    { token: CONSOLE_TOKEN, role: 'console' },
    { token: GATEWAY_TOKEN, role: 'gateway', units: ['*'] },
    { token: 'r-secret', role: 'reporter' },
  ],
}));
writeFileSync(join(work, 'fleet.json'), JSON.stringify({
  units: FLEET.map(({ lat, lon, ...u }) => u),
}, null, 1));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, fn, timeoutMs = 15_000) {
  const until = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(100);
  }
}

let server = null;
let serverLog = '';

function startServer(listen, db = 'dispatch.db', staleAfterS = 600, extra = [], tokens = 'tokens.json') {
  return new Promise((resolveStart, reject) => {
    const args = ['--listen', listen, '--db', join(work, db), '--tokens', join(work, tokens),
      '--fleet', join(work, 'fleet.json'), '--web-root', webRoot,
      // Nothing may lapse or go stale while a slow machine runs the browser (unless asked).
      '--ack-timeout', '600', '--stale-after', String(staleAfterS), ...(rescueV2 ? ['--airborne-within', '3'] : []), ...extra];
    const proc = spawn(dispatchd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`dispatchd did not print its port:\n${serverLog}`)), 15_000);
    proc.stdout.on('data', (d) => {
      out += d;
      serverLog += d;
      const m = out.match(/listening on (\S+):(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolveStart({ proc, host: m[1], port: Number(m[2]) });
      }
    });
    proc.stderr.on('data', (d) => { serverLog += d; });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`dispatchd exited with ${code}:\n${serverLog}`));
    });
  });
}

function stopServer(s) {
  return new Promise((r) => {
    if (!s || s.proc.exitCode !== null) return r();
    s.proc.removeAllListeners('exit');
    s.proc.on('exit', () => r());
    s.proc.kill('SIGTERM');
  });
}

// One gateway connection that speaks for the whole fleet and records what it is sent.
class Gateway {
  constructor(port) {
    this.received = [];
    this.ws = new WebSocket(`ws://127.0.0.1:${port}/ws/unit?token=${GATEWAY_TOKEN}`);
    this.ws.on('message', (data) => {
      const msg = JSON.parse(String(data));
      for (const m of Array.isArray(msg) ? msg : [msg]) this.received.push(m);
    });
    this.opened = new Promise((r, j) => { this.ws.once('open', r); this.ws.once('error', j); });
  }
  send(msg) { this.ws.send(JSON.stringify(msg)); }
  positions(list, ts) {
    this.send(list.map((u) => ({ type: 'position', unit: u.id, lat: u.lat, lon: u.lon, ts })));
  }
  find(pred) { return this.received.find(pred); }
  close() { this.ws.close(); }
}

let context = null;
let gateway = null;
let standby = null;
let standbyGateway = null;
let roadServer = null;
let roadGateway = null;
let stationServer = null;
const stationSockets = [];

after(async () => {
  if (context) await context.close().catch(() => {});
  if (gateway) gateway.close();
  if (standbyGateway) standbyGateway.close();
  await stopServer(server);
  await stopServer(standby);
  if (roadGateway) roadGateway.close();
  await stopServer(roadServer);
  for (const ws of stationSockets) ws.close();
  await stopServer(stationServer);
  rmSync(work, { recursive: true, force: true });
});

test('dispatch console in a real browser', async (t) => {
  server = await startServer('127.0.0.1:0');
  const base = `http://127.0.0.1:${server.port}`;

  gateway = new Gateway(server.port);
  await gateway.opened;
  // Dated 20 s ago so a later move of a kilometre or two stays under the speed limit.
  const t0 = Date.now() - 20_000;
  gateway.positions(FLEET, t0);
  await waitFor('the gateway positions to reach the engine', async () => {
    const r = await fetch(`${base}/api/units?token=${CONSOLE_TOKEN}`);
    const units = await r.json();
    return units.length === FLEET.length && units.every((u) => u.lat != null);
  });

  context = await chromium.launchPersistentContext(mkdtempSync(join(work, 'profile-')), {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1600, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] || await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const hook = (fn, arg) => page.evaluate(fn, arg);

  await t.test('the page loads and shows the units', async () => {
    await page.goto(`${base}/?token=${CONSOLE_TOKEN}`);
    await waitFor('a live connection', () => hook(() => window.__console?.connection() === 'live'));
    await waitFor('all units in the store', () => hook(() => window.__console.unitCount()).then((n) => n === FLEET.length));
    await waitFor('all units drawn', () => hook(() => window.__console.unitsDrawn()).then((n) => n === FLEET.length));
    for (const u of FLEET) {
      const at = await hook((id) => window.__console.unitPosition(id), u.id);
      assert.ok(at, `unit ${u.id} is drawn`);
      assert.ok(Math.abs(at.lat - u.lat) < 1e-6 && Math.abs(at.lon - u.lon) < 1e-6, `unit ${u.id} at its position`);
      const px = await hook((id) => window.__console.unitPixel(id), u.id);
      assert.ok(px && px[3] > 0, `something is painted under ${u.id}`);
    }
    await waitFor('the district boundaries', () => hook(() => window.__console.districtCount()).then((n) => n > 0));
    // Chinese callsigns show in the stats and on the canvas; the queue starts empty.
    assert.equal(await page.locator('#queue .qrow').count(), 0);
    if (rescueV2) {
      // The server's own numbers (its snapshot's config), not the console's defaults.
      const policy = await hook(() => window.__console.policy());
      assert.equal(policy.ackWithinMs, 600_000, '--ack-timeout 600');
      assert.equal(policy.staleAfterMs, 600_000, '--stale-after 600');
    }
    // Chinese by default, in a dispatcher's words.
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'zh-CN');
    assert.match(await page.locator('#conn').innerText(), /在线/);
    assert.match(await page.locator('#side .tabs').innerText(), /在办/);
  });

  await t.test('a unit that moves moves on the map', async () => {
    const before = await hook(() => window.__console.unitPosition('M004'));
    const moved = { id: 'M004', lat: 29.6100, lon: 106.5050 }; // ~1.2 km in 20 s: 216 km/h
    gateway.positions([moved], Date.now());
    const after = await waitFor('M004 to be drawn at its new position', async () => {
      const p = await hook(() => window.__console.unitPosition('M004'));
      return p && Math.abs(p.lat - moved.lat) < 1e-6 ? p : null;
    });
    const shift = Math.hypot(after.x - before.x, after.y - before.y);
    assert.ok(shift > 10, `M004 moved ${shift.toFixed(1)} px on screen`);
    assert.ok(after.y < before.y, 'north is up');
    const px = await hook(() => window.__console.unitPixel('M004'));
    assert.ok(px && px[3] > 0, 'M004 painted at its new place');
    FLEET.find((u) => u.id === 'M004').lat = moved.lat;
    FLEET.find((u) => u.id === 'M004').lon = moved.lon;
  });

  let incidentId = null;
  await t.test('a report filed from the page is assigned and shows in the queue and on the map', async () => {
    // Click a spot about 1.6 km from M001, its nearest moto, and far enough from every
    // unit on screen that the click opens the report form rather than a unit's card.
    const spot = { lat: 29.5700, lon: 106.5850 };
    const pt = await hook(([lat, lon]) => window.__console.containerPoint(lat, lon), [spot.lat, spot.lon]);
    const box = await page.locator('#map').boundingBox();
    await page.mouse.click(box.x + pt.x, box.y + pt.y);
    await page.locator('#report-form').waitFor({ state: 'visible' });
    await page.selectOption('#rf-severity', 'injury');
    await page.fill('#rf-injured', '1');
    await page.fill('#rf-plate', '渝A12345');
    await page.fill('#rf-insurer', 'PICC');
    await page.fill('#rf-note', 'two cars, rear-end');
    await page.click('#rf-submit');

    const reportId = await waitFor('the report id', () => hook(() => window.__console.lastReportId()));
    assert.match(reportId, /^console-\d+-[0-9a-z]+$/);
    incidentId = await waitFor('the report to be accepted', () => hook((id) => window.__console.acceptedIncident(id), reportId));

    const assign = await waitFor('an assign at the gateway', () =>
      gateway.find((m) => m.type === 'assign' && m.incident === incidentId));
    assert.equal(assign.unit, 'M001', 'the nearest moto team is sent');
    assert.equal(assign.severity, 'injury');

    await waitFor('the incident in the queue', () => hook(() => window.__console.queueIds()).then((ids) => ids.includes(incidentId)));
    const row = page.locator(`#queue .qrow[data-id="${incidentId}"]`);
    await waitFor('the queue row to show the assignment', async () => /已派/.test(await row.innerText()));
    assert.match(await row.innerText(), /伤人/, 'severity in Chinese');
    assert.match(await row.innerText(), /渝警保01/);
    const marker = await hook((id) => window.__console.incidentOnMap(id), incidentId);
    assert.ok(marker, 'incident marker on the map');
    assert.ok(Math.abs(marker.lat - spot.lat) < 0.0015 && Math.abs(marker.lon - spot.lon) < 0.0015, `marker where the map was clicked (${marker.lat}, ${marker.lon})`);
    assert.equal(await page.locator(`path.incident-marker[data-incident="${incidentId}"]`).count(), 1);
    const inc = await hook((id) => window.__console.incident(id), incidentId);
    assert.equal(inc.vehicles?.[0]?.plate, '渝A12345');
    assert.equal(await hook(() => window.__console.unitStatus('M001')), 'assigned');
    // The page opened it: the detail panel shows the assignment.
    await page.locator('#detail').waitFor({ state: 'visible' });
    await waitFor('the assignment in the detail panel', async () => /渝警保01/.test(await page.locator('#d-assignments').innerText()));
  });

  await t.test('a manual assign from the page reaches the unit', async () => {
    assert.ok(incidentId, 'needs the incident filed above');
    await page.selectOption('#cand-kind', 'car');
    const button = page.locator('#d-candidates button[data-unit="C001"]');
    await button.waitFor({ state: 'visible' });
    const row = await button.locator('xpath=ancestor::tr').innerText();
    assert.match(row, /渝保勘01/);
    assert.match(row, /\d+:\d\d/, 'an ETA is shown');
    await button.click();
    const assign = await waitFor('the manual assign at the gateway', () =>
      gateway.find((m) => m.type === 'assign' && m.incident === incidentId && m.unit === 'C001'));
    assert.ok(assign.assignment);
    await waitFor('the car in the detail panel', async () => /渝保勘01/.test(await page.locator('#d-assignments').innerText()));
    // Acks travel back to the page: M001 goes en route.
    const first = gateway.find((m) => m.type === 'assign' && m.incident === incidentId && m.unit === 'M001');
    gateway.send({ type: 'ack', assignment: first.assignment });
    await waitFor('M001 en route on the page', () => hook(() => window.__console.unitStatus('M001')).then((s) => s === 'en_route'));
    await sleep(300);
    await page.screenshot({ path: join(artifacts, 'console.png') });
  });

  // A report from the call centre (the reporter role), as it would come in.
  const postReport = async (report) => {
    const r = await fetch(`${base}/api/incidents`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer r-secret' },
      body: JSON.stringify(report),
    });
    const text = await r.text();
    assert.equal(r.status, 201, text);
    return JSON.parse(text).incident;
  };
  const record = async (id) => (await fetch(`${base}/api/incidents/${id}?token=${CONSOLE_TOKEN}`)).json();
  const openFromQueue = async (id) => {
    await waitFor(`${id} in the queue`, () => hook(() => window.__console.queueIds()).then((ids) => ids.includes(id)));
    await page.locator(`#queue .qrow[data-id="${id}"]`).click();
    await waitFor(`${id} selected`, () => hook(() => window.__console.selectedIncident()).then((s) => s === id));
  };
  // A two-step button: the first click arms it, the second acts.
  const clickTwice = async (locator) => {
    await locator.click();
    await locator.click();
  };

  await t.test('cancel an assignment from the page: the unit is told and freed', async () => {
    await openFromQueue(incidentId);
    const car = gateway.find((m) => m.type === 'assign' && m.incident === incidentId && m.unit === 'C001');
    const button = page.locator(`#d-assignments button[data-assignment="${car.assignment}"]`);
    await button.waitFor({ state: 'visible' });
    assert.equal(await button.innerText(), '撤销');
    await button.click();
    assert.equal(await button.innerText(), '确认撤销', 'asks once more');
    await button.click();
    const cancel = await waitFor('the cancel at the gateway', () =>
      gateway.find((m) => m.type === 'cancel' && m.assignment === car.assignment));
    assert.equal(cancel.unit, 'C001');
    await waitFor('C001 free again on the page', () => hook(() => window.__console.unitStatus('C001')).then((s) => s === 'available'));
    const row = page.locator(`#d-assignments tr[data-assignment="${car.assignment}"]`);
    await waitFor('the assignment shown cancelled', async () => /撤销/.test(await row.innerText()) && (await row.locator('button').count()) === 0);
    assert.match(await row.innerText(), /调度员撤销/, 'the reason in a dispatcher\'s words');
  });

  let remoteA = null;
  await t.test('escalate a remote incident from the page: a unit is sent', async () => {
    // Minor, drivable, the parties agree: remote handling, no unit.
    remoteA = await postReport({ id: 'cc-remote-a', lat: 29.5760, lon: 106.5330, severity: 'minor', drivable: true,
      parties_agree: true, vehicles: [{ plate: '渝A11111' }, { plate: '渝B22222' }] });
    await openFromQueue(remoteA);
    const row = page.locator(`#queue .qrow[data-id="${remoteA}"]`);
    assert.match(await row.innerText(), /远程定责/);
    assert.match(await row.innerText(), /定责剩余/, 'the liability countdown runs');
    const escalate = page.locator('#d-escalate');
    await escalate.waitFor({ state: 'visible' });
    await page.fill('#d-escalate-reason', '视频连线失败');
    await clickTwice(escalate);
    const assign = await waitFor('an assign for the escalated incident', () =>
      gateway.find((m) => m.type === 'assign' && m.incident === remoteA));
    assert.equal(assign.unit, 'M002', 'the nearest free moto');
    await waitFor('the escalation in the timeline', async () => /升级出警/.test(await page.locator('#d-timeline').innerText()));
    assert.match(await page.locator('#d-timeline').innerText(), /视频连线失败/);
    await waitFor('the escalate button gone', async () => !(await escalate.isVisible()));
  });

  await t.test('close an incident from the page: its units are told', async () => {
    await openFromQueue(remoteA);
    const assign = gateway.find((m) => m.type === 'assign' && m.incident === remoteA);
    await clickTwice(page.locator('#d-close-inc'));
    await waitFor('the cancel for the closed incident at the gateway', () =>
      gateway.find((m) => m.type === 'cancel' && m.assignment === assign.assignment));
    await waitFor('the incident gone from the queue', () => hook(() => window.__console.queueIds()).then((ids) => !ids.includes(remoteA)));
    assert.equal((await record(remoteA)).state, 'closed');
    await waitFor('the detail shows it closed', async () => /结案/.test(await page.locator('#d-summary').innerText()));
    assert.equal(await page.locator('#d-close-inc').isDisabled(), true);
  });

  let remoteB = null;
  await t.test('decide liability from the page; an overdue liability clock raises an alert', async () => {
    // Reported six minutes ago: its 5-minute liability clock has run out.
    remoteB = await postReport({ id: 'cc-remote-b', ts: Date.now() - 360_000, lat: 29.5400, lon: 106.5600, severity: 'minor',
      drivable: true, parties_agree: true, vehicles: [{ plate: '渝C33333' }, { plate: '渝D44444' }] });
    await waitFor('an overdue alert for it', () => hook(() => window.__console.alerts())
      .then((list) => list.some((a) => a.kind === 'overdue' && a.incident === remoteB)));
    await waitFor('the alert count on its tab', async () => /告警\s*[1-9]/.test(await page.locator('.tab[data-tab="alerts-panel"]').innerText()));
    await page.locator('.tab[data-tab="alerts-panel"]').click();
    const alert = page.locator(`#alerts li.alert-item[data-incident="${remoteB}"]`);
    assert.match(await alert.innerText(), /定责时限超时/);
    // The alert opens the incident.
    await alert.locator('.a-text').click();
    await waitFor('the incident opened from its alert', () => hook(() => window.__console.selectedIncident()).then((s) => s === remoteB));
    assert.match(await page.locator('#d-clocks').innerText(), /定责超时/);
    // A plate that is not the incident's: the server's error shows, nothing changes.
    await page.fill('#lia-fault', '渝Z99999');
    await page.click('#lia-submit');
    await waitFor('the refusal', () => hook(() => window.__console.errors()).then((e) => e.some((x) => x.ref === remoteB && x.code === 'bad_message')));
    assert.equal((await record(remoteB)).state, 'remote');
    await page.fill('#lia-fault', '渝D44444');
    await page.fill('#lia-note', '追尾');
    await page.click('#lia-submit');
    await waitFor('the incident closed by its liability decision', async () => (await record(remoteB)).state === 'closed');
    const rec = await record(remoteB);
    assert.equal(rec.at_fault, '渝D44444');
    await waitFor('the decision in the detail', async () => /渝D44444/.test(await page.locator('#d-summary').innerText()));
    await page.locator('.tab[data-tab="queue-panel"]').click();
  });

  await t.test('the English switch is remembered; the page speaks Chinese again after', async () => {
    await page.click('#lang-switch');
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
    assert.equal(await page.evaluate(() => localStorage.getItem('dispatch.console.lang')), 'en');
    assert.match(await page.locator('#conn').innerText(), /live/);
    let rowText = '';
    // Waiting for a car again since its car was cancelled: "dispatching", with its clocks.
    await waitFor('the queue in English', async () => /dispatching[\s\S]*age/.test(rowText = await page.locator(`#queue .qrow[data-id="${incidentId}"]`).innerText()))
      .catch((e) => { throw new Error(`${e.message}: ${rowText}`); });
    await page.reload();
    await waitFor('live after the reload', () => hook(() => window.__console?.connection() === 'live'));
    assert.equal(await hook(() => window.__console.lang()), 'en', 'remembered across a reload');
    await page.click('#lang-switch');
    assert.equal(await hook(() => window.__console.lang()), 'zh-CN');
    assert.match(await page.locator('#conn').innerText(), /在线/);
  });

  await t.test('after a server restart the page reconnects to a fresh snapshot without duplicates', async () => {
    const markersBefore = await hook(() => window.__console.incidentMarkerCount());
    const port = server.port;
    gateway.close();
    await stopServer(server);
    await waitFor('the page to notice', () => hook(() => window.__console.connection() !== 'live'));
    await waitFor('a lost-connection alert', () => hook(() => window.__console.alerts()).then((l) => l.some((a) => a.key === 'conn' && !a.resolved)));
    server = await waitFor('dispatchd to start again on the same port', () => startServer(`127.0.0.1:${port}`).catch(() => null), 20_000);
    gateway = new Gateway(server.port);
    await gateway.opened;
    gateway.positions(FLEET, Date.now());
    await waitFor('a second snapshot', () => hook(() => window.__console.snapshots()).then((n) => n >= 2), 40_000);
    await waitFor('live again', () => hook(() => window.__console.connection() === 'live'));
    assert.ok((await hook(() => window.__console.alerts())).some((a) => a.key === 'conn' && a.resolved), 'the alert says it is over');
    assert.equal(await hook(() => window.__console.unitCount()), FLEET.length);
    await waitFor('all units drawn again', () => hook(() => window.__console.unitsDrawn()).then((n) => n === FLEET.length));
    assert.equal(await hook(() => window.__console.incidentMarkerCount()), markersBefore);
    assert.equal(await page.locator('path.incident-marker').count(), markersBefore);
    assert.deepEqual(await hook(() => window.__console.queueIds()), [incidentId]);
  });

  await t.test('callsign labels never overlap; the others show on hover', async () => {
    await hook(() => window.__console.setView(29.6400, 106.4400, 15));
    let labels = [];
    await waitFor('labels drawn at the crowd', async () => {
      labels = await hook(() => window.__console.labels());
      return labels.filter((l) => l.id.startsWith('X')).length > 3;
    });
    const crowdLabels = labels.filter((l) => l.id.startsWith('X'));
    assert.ok(crowdLabels.length < CROWD.length, `not every one of the crowd fits (${crowdLabels.length} of ${CROWD.length})`);
    for (let i = 0; i < labels.length; i++) {
      const a = labels[i];
      assert.equal(a.text, FLEET.find((u) => u.id === a.id).callsign);
      for (let j = i + 1; j < labels.length; j++) {
        const b = labels[j];
        const hit = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        assert.ok(!hit, `labels of ${a.id} and ${b.id} overlap`);
      }
    }
    // Hover a unit without a label: its callsign shows.
    const labelled = new Set(labels.map((l) => l.id));
    const box = await page.locator('#map').boundingBox();
    let shown = null;
    for (const u of CROWD.filter((c) => !labelled.has(c.id))) {
      const at = await hook((id) => window.__console.unitPosition(id), u.id);
      if (!at) continue;
      await page.mouse.move(box.x + at.x, box.y + at.y);
      shown = await waitFor('a hover tooltip', () => hook(() => window.__console.hovered()), 3_000).catch(() => null);
      if (shown) break;
    }
    assert.ok(shown, 'hovering an unlabelled unit names it');
    const tip = page.locator('.leaflet-tooltip.unit-hover');
    await tip.waitFor({ state: 'visible' });
    assert.match(await tip.innerText(), new RegExp(FLEET.find((u) => u.id === shown).callsign));
    // At city zoom the crowd is one blob: labels that fit at all, none on top of another.
    await hook(() => window.__console.setView(29.57, 106.53, 9));
    await waitFor('a redraw at city zoom', async () => (await hook(() => window.__console.labels())).length < labels.length);
  });

  await t.test('history: search, filters, paging, CSV link, a past incident\'s timeline', async () => {
    await hook(() => window.__console.setView(29.57, 106.53, 11));
    // Twelve more remote incidents, so the history has pages.
    for (let i = 0; i < 12; i++) {
      await postReport({ id: `cc-hist-${i}`, lat: 29.50 + i * 0.002, lon: 106.50, severity: 'minor', drivable: true,
        parties_agree: true, vehicles: [{ plate: `渝H${String(i).padStart(5, '0')}` }, { plate: '渝J77777' }] });
    }
    const all = await (await fetch(`${base}/api/incidents?state=all&token=${CONSOLE_TOKEN}`)).json();
    assert.equal(all.length, 15);
    await page.locator('.tab[data-tab="history-panel"]').click();
    await page.selectOption('#hist-limit', '10');
    await page.click('#hist-search');
    await waitFor('the first page', () => hook(() => window.__console.historyIds()).then((ids) => ids.length === 10));
    let ids = await hook(() => window.__console.historyIds());
    assert.deepEqual(ids, all.slice(0, 10).map((x) => x.id), 'newest first, as the server pages them');
    await page.locator('#hist-more').waitFor({ state: 'visible' });
    await page.click('#hist-more');
    await waitFor('the second page', () => hook(() => window.__console.historyIds()).then((x) => x.length === 15));
    ids = await hook(() => window.__console.historyIds());
    assert.deepEqual(ids, all.map((x) => x.id), 'every incident once, in order');
    assert.equal(await page.locator('#hist-more').isVisible(), false, 'no older page');

    // Filters: a plate, a severity, closed ones; the CSV link carries them.
    await page.selectOption('#hist-limit', '50');
    await page.fill('#hist-plate', '渝C33333');
    await page.click('#hist-search');
    await waitFor('the plate search', () => hook(() => window.__console.historyIds()).then((x) => x.length === 1 && x[0] === remoteB));
    const csv = new URL(await page.locator('#hist-csv').getAttribute('href'), base);
    assert.equal(csv.pathname, '/api/incidents');
    assert.equal(csv.searchParams.get('format'), 'csv');
    assert.equal(csv.searchParams.get('plate'), '渝C33333');
    assert.equal(csv.searchParams.get('token'), CONSOLE_TOKEN);
    // The export downloads a CSV with the search's matches (made by the page while the
    // server answers JSON; the server's own when it makes CSV).
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#hist-csv')]);
    assert.match(download.suggestedFilename(), /^incidents-\d{8}-\d{4}\.csv$/);
    const file = join(work, 'export.csv');
    await download.saveAs(file);
    const text = readFileSync(file, 'utf8').replace(/^\ufeff/, '');
    const lines = text.trim().split(/\r?\n/);
    assert.match(lines[0], /^id,/);
    assert.equal(lines.length, 2, `the header and the one match:\n${text}`);
    assert.match(lines[1], new RegExp(`^${remoteB},`));
    assert.match(lines[1], /渝C33333/);
    await page.fill('#hist-plate', '');
    await page.selectOption('#hist-severity', 'injury');
    await page.click('#hist-search');
    await waitFor('the severity search', () => hook(() => window.__console.historyIds()).then((x) => x.length === 1 && x[0] === incidentId));
    await page.selectOption('#hist-severity', '');
    await page.selectOption('#hist-state', 'closed');
    await page.click('#hist-search');
    await waitFor('the closed ones', () => hook(() => window.__console.historyIds()).then((x) => x.length === 2 && x.includes(remoteA) && x.includes(remoteB)));
    const future = new Date(Date.now() + 3_600_000);
    const local = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}T${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}:00`;
    await page.fill('#hist-from', local(future));
    await page.click('#hist-search');
    await waitFor('nothing after the future', () => hook(() => window.__console.historyIds()).then((x) => x.length === 0));
    assert.match(await page.locator('#hist-status').innerText(), /没有符合条件的事故/);
    await page.fill('#hist-from', '');

    // A past incident opens with its whole timeline.
    await page.click('#hist-search');
    await page.locator(`#hist-list .hrow[data-id="${remoteB}"]`).click();
    await waitFor('the past incident in the detail', () => hook(() => window.__console.selectedIncident()).then((s) => s === remoteB));
    await waitFor('its timeline', async () => {
      const tl = await page.locator('#d-timeline').innerText();
      return /接报/.test(tl) && /转远程定责/.test(tl) && /定责/.test(tl) && /结案/.test(tl);
    });
    assert.match(await page.locator('#d-summary').innerText(), /渝D44444/);
    assert.equal(await page.locator('#lia-submit').isDisabled(), true, 'no decision on a closed incident');
    await page.screenshot({ path: join(artifacts, 'console-history.png') });
  });

  await t.test('an incident\'s unit tracks replayed on the map', async () => {
    // M001 drives toward the scene: two fixes 2.5 s and about 125 m apart (180 km/h, under
    // the GPS-jump limit; over the 100 m at which a track point is kept).
    const m1 = FLEET.find((u) => u.id === 'M001');
    const path = [{ lat: m1.lat + 0.0011, lon: m1.lon + 0.0003 }, { lat: m1.lat + 0.0022, lon: m1.lon + 0.0006 }];
    for (const p of path) {
      gateway.positions([{ id: 'M001', ...p }], Date.now());
      await waitFor('the fix applied', () => hook(() => window.__console.unitPosition('M001')).then((at) => at && Math.abs(at.lat - p.lat) < 1e-6));
      await sleep(2_500);
    }
    await page.locator('.tab[data-tab="queue-panel"]').click();
    await page.locator(`#queue .qrow[data-id="${incidentId}"]`).click();
    await waitFor('the incident selected', () => hook(() => window.__console.selectedIncident()).then((s) => s === incidentId));
    await page.click('#d-replay');
    await page.locator('#replay-bar').waitFor({ state: 'visible' });
    const points = await waitFor('tracks loaded', () => hook(() => window.__console.replayPoints()).then((p) => (p.M001 >= 3 ? p : null)));
    assert.ok('C001' in points, 'every unit of the incident is asked for');
    await page.locator('#replay-slider').fill('1000');
    const end = await hook(() => window.__console.replayAt('M001'));
    assert.ok(Math.abs(end.lat - path[1].lat) < 1e-6 && Math.abs(end.lon - path[1].lon) < 1e-6, `at the end M001 is at its last fix (${JSON.stringify(end)})`);
    await page.locator('#replay-slider').fill('0');
    const start = await hook(() => window.__console.replayAt('M001'));
    assert.ok(start.lat < path[0].lat, 'at the start it is where it was');
    await page.screenshot({ path: join(artifacts, 'console-replay.png') });
    await page.click('#replay-clear');
    assert.equal(await page.locator('#replay-bar').isVisible(), false);
  });

  await t.test('air rescue: the helicopter\'s and the securing team\'s lines go to the landing zone; the chain with its clocks; an overdue alert', async () => {
    // A critical accident in rural 长寿区, near its landing zone.
    const scene = { lat: 29.8700, lon: 107.0950 };
    const id = await postReport({ id: 'cc-critical-1', ...scene, severity: 'critical', injured: 2 });
    const heli = await waitFor('the helicopter sent', () => gateway.find((m) => m.type === 'assign' && m.incident === id && m.unit === 'H1'));
    assert.equal(heli.task, 'landing_zone');
    const ground = await waitFor('a team to the scene', () => gateway.find((m) => m.type === 'assign' && m.incident === id && m.task === 'scene'));
    const secure = rescueV2 ? await waitFor('a team to secure the landing zone', () => gateway.find((m) => m.type === 'assign' && m.incident === id && m.task === 'secure_lz')) : null;
    const want = secure ? 3 : 2;
    const lines = await waitFor('the task lines drawn', () => hook(() => window.__console.taskLines())
      .then((l) => { const mine = l.filter((x) => x.incident === id); return mine.length === want ? mine : null; }));
    const at = (l, p) => Math.abs(l.lat - p.lat) < 1e-6 && Math.abs(l.lon - p.lon) < 1e-6;
    const heliLine = lines.find((l) => l.unit === 'H1');
    assert.equal(heliLine.task, 'landing_zone');
    assert.ok(at(heliLine, heli), 'the helicopter to the landing zone');
    assert.ok(!at(heliLine, scene), 'not to the scene');
    assert.ok(at(lines.find((l) => l.unit === ground.unit), scene), 'the team to the scene');
    if (secure) assert.ok(at(lines.find((l) => l.unit === secure.unit), heli), 'the securing team to the landing zone too');
    await openFromQueue(id);
    assert.match(await page.locator('#d-assignments').innerText(), /降落点/, 'the task in a dispatcher\'s words');
    if (rescueV2) {
      // The chain as the server tracks it, each step with its time; the air clocks run.
      const chain = page.locator('#d-rescue');
      await waitFor('the chain', async () => /信息通报医院[\s\S]*调用直升机/.test(await chain.innerText()));
      assert.equal(await page.locator('#d-rescue li.done[data-step="heli_called"]').count(), 1);
      assert.equal(await page.locator('#d-rescue li.todo[data-step="airborne"]').count(), 1);
      assert.match(await chain.innerText(), /保障降落点|降落点/);
      // --airborne-within 3: not airborne in time, the server raises the alarm.
      await waitFor('the server\'s overdue alert', () => hook(() => window.__console.alerts())
        .then((l) => l.some((a) => a.key === `overdue:${id}:airborne`)), 20_000);
      await waitFor('the airborne clock late beside its step', () => page.locator('#d-rescue li[data-step="airborne"] .c-clock.late').count().then((n) => n === 1));
      assert.match(await page.locator('#d-clocks').innerText(), /起飞时限/);
    }
    // The crew reports airborne: the step is done, in Chinese, and the helicopter is en route.
    gateway.send({ type: 'rescue', assignment: heli.assignment, step: 'airborne' });
    await waitFor('H1 en route', () => hook(() => window.__console.unitStatus('H1')).then((s) => s === 'en_route'));
    await waitFor('the step in the timeline', async () => /起飞/.test(await page.locator('#d-timeline').innerText()));
    if (rescueV2) {
      await waitFor('airborne done in the chain', () => page.locator('#d-rescue li.done[data-step="airborne"]').count().then((n) => n === 1));
      assert.match(await page.locator('#d-rescue li[data-step="airborne"]').innerText(), /\d\d:\d\d:\d\d/);
      await waitFor('met late, and said so', async () => /超时完成/.test(await page.locator('#d-rescue li[data-step="airborne"] .c-clock').innerText()));
    }
    if ((await hook((i) => window.__console.incident(i), id)).hospital) {
      assert.match(await page.locator('#d-summary').innerText(), /接收医院/);
    }
    await page.screenshot({ path: join(artifacts, 'console-rescue.png') });
  });

  await t.test('with roads: the road layer, the team on the same bank sent, its route drawn', { skip: !serverHas('--roads') && 'this dispatchd has no --roads' }, async () => {
    // tests/data/river.osm: two banks of a river, one bridge at the east end.
    const osm = resolve(here, '../data/river.osm');
    roadServer = await startServer('127.0.0.1:0', 'roads.db', 600, ['--roads', osm]);
    const roadBase = `http://127.0.0.1:${roadServer.port}`;
    roadGateway = new Gateway(roadServer.port);
    await roadGateway.opened;
    // M001 across the water (1.5 km straight, 9 km by the bridge); M002 on the same bank, 1.9 km away.
    roadGateway.positions([{ id: 'M001', lat: 29.5530, lon: 106.5200 }, { id: 'M002', lat: 29.5670, lon: 106.5000 }], Date.now());
    await waitFor('the positions held', async () => (await (await fetch(`${roadBase}/api/units?token=${CONSOLE_TOKEN}`)).json())
      .filter((u) => u.lat != null).length === 2);
    const three = await context.newPage();
    three.on('pageerror', (e) => pageErrors.push(String(e)));
    await three.goto(`${roadBase}/?token=${CONSOLE_TOKEN}`);
    await waitFor('live', () => three.evaluate(() => window.__console?.connection() === 'live'));
    await waitFor('the road layer', () => three.evaluate(() => window.__console.roadCount()).then((n) => n > 0));
    const r = await fetch(`${roadBase}/api/incidents`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer r-secret' },
      body: JSON.stringify({ id: 'cc-road-1', lat: 29.5670, lon: 106.5200, severity: 'injury' }) });
    const id = JSON.parse(await r.text()).incident;
    const assign = await waitFor('the assign', () => roadGateway.find((m) => m.type === 'assign' && m.incident === id));
    assert.equal(assign.unit, 'M002', 'the team on the same bank, though the other is nearer in a straight line');
    await waitFor(`${id} in the queue`, () => three.evaluate(() => window.__console.queueIds()).then((ids) => ids.includes(id)));
    await three.locator(`#queue .qrow[data-id="${id}"]`).click();
    const points = await waitFor('its route drawn', () => three.evaluate((a) => window.__console.routes()[a] ?? null, assign.assignment));
    assert.ok(points >= 3, `a route along the road (${points} points)`);
    assert.ok(await three.locator('path.route-line').count() >= 1, 'on the map');
    await three.close();
  });

  await t.test('stations: a hazard on the map and in the alerts, cleared from the page; a fraud signal where liability is decided',
    { skip: !serverHas('--sighting-retention-days') && 'this dispatchd has no stations' }, async () => {
      // Two illustrative stations: one near the city, one 300 km east.
      const station = (id, name, lat, lon) => ({ type: 'Feature', properties: { id, name, kind: 'station' }, geometry: { type: 'Point', coordinates: [lon, lat] } });
      writeFileSync(join(work, 'stations.geojson'), JSON.stringify({ type: 'FeatureCollection', features: [
        station('ST-TEST', '测试劝导站', 29.6000, 106.6000), station('ST-FAR', '远方劝导站', 29.6000, 109.7000)] }));
      writeFileSync(join(work, 'tokens-stations.json'), JSON.stringify({ tokens: [
        { token: CONSOLE_TOKEN, role: 'console' }, { token: GATEWAY_TOKEN, role: 'gateway', units: ['*'] },
        { token: 'r-secret', role: 'reporter' },
        { token: 's-test', role: 'station', station: 'ST-TEST' }, { token: 's-far', role: 'station', station: 'ST-FAR' }] }));
      stationServer = await startServer('127.0.0.1:0', 'stations.db', 600, ['--places', join(work, 'stations.geojson')], 'tokens-stations.json');
      const sBase = `http://127.0.0.1:${stationServer.port}`;
      const openStation = async (tok) => {
        const ws = new WebSocket(`ws://127.0.0.1:${stationServer.port}/ws/station?token=${tok}`);
        const got = [];
        ws.on('message', (d) => { const m = JSON.parse(String(d)); for (const x of Array.isArray(m) ? m : [m]) got.push(x); });
        await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
        stationSockets.push(ws);
        return { ws, got, send: (m) => ws.send(JSON.stringify(m)) };
      };
      const near = await openStation('s-test');
      const far = await openStation('s-far');
      const four = await context.newPage();
      four.on('pageerror', (e) => pageErrors.push(String(e)));
      await four.goto(`${sBase}/?token=${CONSOLE_TOKEN}`);
      await waitFor('live', () => four.evaluate(() => window.__console?.connection() === 'live'));
      await waitFor('the stations loaded', () => four.evaluate(() => window.__console.placeCount()).then((n) => n === 2));

      // A landslide reported by the near station.
      near.send({ type: 'hazard', id: 'hz-1', lat: 29.6100, lon: 106.6200, ts: Date.now() - 60_000, kind: 'landslide', note: '塌方，单车道' });
      const acc = await waitFor('the hazard accepted', () => near.got.find((m) => m.type === 'accepted' && m.id === 'hz-1'));
      const hid = acc.hazard;
      await waitFor('the hazard on the page', () => four.evaluate(() => window.__console.hazards()).then((h) => h.includes(hid)));
      await waitFor('a hazard alert', () => four.evaluate(() => window.__console.alerts()).then((l) => l.some((a) => a.kind === 'hazard' && !a.resolved)));
      await four.locator('.tab[data-tab="alerts-panel"]').click();
      await waitFor('the alert names the kind and the station', async () => /塌方[\s\S]*测试劝导站/.test(await four.locator('#alerts').innerText()));
      const icon = four.locator(`.hazard-icon[data-hazard="${hid}"]`);
      await four.evaluate(() => window.__console.setView(29.61, 106.62, 13));
      await icon.waitFor({ state: 'visible' });
      await icon.click();
      const clear = four.locator('.hazard-popup button[data-act="clear"]');
      await clear.waitFor({ state: 'visible' });
      assert.match(await four.locator('.hazard-popup').innerText(), /测试劝导站/);
      await clear.click();
      await waitFor('the hazard cleared', () => four.locator(`.hazard-icon.cleared[data-hazard="${hid}"]`).count().then((n) => n === 1));
      await waitFor('its alert over', () => four.evaluate(() => window.__console.alerts()).then((l) => l.some((a) => a.kind === 'hazard' && a.resolved)));
      const stored = await (await fetch(`${sBase}/api/hazards?state=all&token=${CONSOLE_TOKEN}`)).json();
      assert.equal(stored.find((h) => h.hazard === hid)?.state, 'cleared');

      // A plate seen 300 km away ten minutes ago, in a report now: flagged where liability is decided.
      far.send({ type: 'sighting', id: 'far-1', plate: '渝F55555', ts: Date.now() - 600_000 });
      await waitFor('the sighting accepted', () => far.got.find((m) => m.type === 'accepted' && m.id === 'far-1'));
      const r = await fetch(`${sBase}/api/incidents`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer r-secret' },
        body: JSON.stringify({ id: 'cc-fraud-1', lat: 29.5600, lon: 106.5500, severity: 'minor', drivable: true, parties_agree: true,
          vehicles: [{ plate: '渝F55555' }, { plate: '渝G66666' }] }) });
      const id = JSON.parse(await r.text()).incident;
      await four.locator('.tab[data-tab="queue-panel"]').click();
      await waitFor(`${id} flagged in the queue`, () => four.locator(`#queue .qrow.flagged[data-id="${id}"]`).count().then((n) => n === 1));
      await four.locator(`#queue .qrow[data-id="${id}"]`).click();
      const signals = four.locator('#d-signals');
      await signals.waitFor({ state: 'visible' });
      const text = await signals.innerText();
      assert.match(text, /轨迹矛盾/);
      assert.match(text, /远方劝导站/, 'the evidence: which station saw it');
      assert.match(text, /渝F55555/);
      // Right above the liability decision.
      assert.equal(await four.evaluate(() => document.getElementById('d-signals').nextElementSibling?.id), 'liability-form');
      // The plate's history from its link.
      await signals.locator('a[data-plate="渝F55555"]').click();
      await waitFor('the vehicle history', async () => /远方劝导站/.test(await four.locator('#d-plate').innerText()) &&
        new RegExp(id).test(await four.locator('#d-plate').innerText()));
      await four.screenshot({ path: join(artifacts, 'console-signals.png') });
      await four.close();
    });

  await t.test('--tiles: the operator\'s tile server is the base map, with its credit', { skip: !serverHas('--tiles') && 'this dispatchd has no --tiles' }, async () => {
    // A tile server of our own on loopback: one 1x1 PNG for every tile, each request counted.
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');
    const asked = [];
    const tiles = createHttpServer((req, res) => { asked.push(req.url); res.writeHead(200, { 'content-type': 'image/png' }); res.end(png); });
    await new Promise((r) => tiles.listen(0, '127.0.0.1', r));
    const template = `http://127.0.0.1:${tiles.address().port}/{z}/{x}/{y}.png`;
    const tileServer = await startServer('127.0.0.1:0', 'tiles.db', 600, ['--tiles', template, '--tiles-attribution', '© 测试底图']);
    try {
      const five = await context.newPage();
      five.on('pageerror', (e) => pageErrors.push(String(e)));
      await five.goto(`http://127.0.0.1:${tileServer.port}/?token=${CONSOLE_TOKEN}`);
      await waitFor('live', () => five.evaluate(() => window.__console?.connection() === 'live'));
      assert.equal(await five.evaluate(() => window.__console.tiles()), template);
      await waitFor('tiles asked for', () => asked.length > 4);
      assert.ok(asked.every((u) => /^\/\d+\/\d+\/\d+\.png$/.test(u)), asked.slice(0, 3).join(' '));
      await waitFor('tiles on the map', () => five.locator('img.leaflet-tile-loaded').count().then((n) => n > 4));
      assert.match(await five.locator('.leaflet-control-attribution').innerText(), /© 测试底图/);
      await five.close();
    } finally {
      await stopServer(tileServer);
      tiles.close();
    }
  });

  await t.test('with two servers the page moves to the one that answers; a report filed while none does is kept and goes there', async () => {
    // The second server's port, reserved now; the server starts on it later.
    const port2 = await new Promise((r) => { const srv = createServer(); srv.listen(0, '127.0.0.1', () => { const p = srv.address().port; srv.close(() => r(p)); }); });
    const two = await context.newPage();
    two.on('pageerror', (e) => pageErrors.push(String(e)));
    await two.goto(`${base}/?token=${CONSOLE_TOKEN}&servers=127.0.0.1:${server.port},127.0.0.1:${port2}`);
    await waitFor('live on the first', () => two.evaluate(() => window.__console?.connection() === 'live'));
    assert.equal(await two.evaluate(() => window.__console.server()), `127.0.0.1:${server.port}`);
    gateway.close();
    await stopServer(server);
    await waitFor('the page to notice', () => two.evaluate(() => window.__console.connection() !== 'live'));
    // Nobody answers: a report filed now is kept on the page.
    const spot = { lat: 29.5450, lon: 106.5100 };
    const pt = await two.evaluate(([lat, lon]) => window.__console.containerPoint(lat, lon), [spot.lat, spot.lon]);
    const box = await two.locator('#map').boundingBox();
    await two.mouse.click(box.x + pt.x, box.y + pt.y);
    await two.locator('#report-form').waitFor({ state: 'visible' });
    await two.selectOption('#rf-severity', 'injury');
    await two.click('#rf-submit');
    const reportId = await two.evaluate(() => window.__console.lastReportId());
    assert.deepEqual(await two.evaluate(() => window.__console.pendingReports()), [reportId], 'kept while offline');
    // The other server comes up: the page moves there and the report goes out.
    // This one marks a unit stale after 3 s without a position.
    standby = await startServer(`127.0.0.1:${port2}`, 'second.db', 3);
    standbyGateway = new Gateway(standby.port);
    await standbyGateway.opened;
    standbyGateway.positions(FLEET, Date.now());
    await waitFor('live on the second', () => two.evaluate(() => window.__console.connection() === 'live'), 40_000);
    assert.equal(await two.evaluate(() => window.__console.server()), `127.0.0.1:${port2}`);
    // Fresh positions now (the units may have gone stale while the page came over).
    standbyGateway.positions(FLEET.map((u) => ({ ...u, lat: u.lat + 0.0001 })), Date.now());
    const accepted = await waitFor('the kept report accepted by the second', () => two.evaluate((id) => window.__console.acceptedIncident(id), reportId));
    await waitFor('its assign from the second', () => standbyGateway.find((m) => m.type === 'assign' && m.incident === accepted));
    assert.deepEqual(await two.evaluate(() => window.__console.pendingReports()), []);
    // Three seconds later the free units go stale: each raises an alert.
    const stale = await waitFor('stale-unit alerts', () => two.evaluate(() => window.__console.alerts())
      .then((l) => { const s = l.filter((a) => a.kind === 'stale' && !a.resolved); return s.length >= 5 ? s : null; }), 20_000);
    assert.ok(stale.some((a) => a.key === 'stale:M004'), JSON.stringify(stale.map((a) => a.key)));
    await two.locator('.tab[data-tab="alerts-panel"]').click();
    await waitFor('the stale alert listed', async () => /渝警保04 失联/.test(await two.locator('#alerts').innerText()));
    // A position again: that alert is over.
    standbyGateway.positions([{ id: 'M004', lat: FLEET.find((u) => u.id === 'M004').lat + 0.0002, lon: FLEET.find((u) => u.id === 'M004').lon }], Date.now());
    await waitFor('M004 fresh again', () => two.evaluate(() => window.__console.alerts())
      .then((l) => l.some((a) => a.key === 'stale:M004' && a.resolved)));
    await two.close();
  });

  assert.deepEqual(pageErrors, [], 'no script errors in the page');
});
