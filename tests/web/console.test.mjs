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
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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

function startServer(listen) {
  return new Promise((resolveStart, reject) => {
    const args = ['--listen', listen, '--db', join(work, 'dispatch.db'), '--tokens', join(work, 'tokens.json'),
      '--fleet', join(work, 'fleet.json'), '--web-root', webRoot,
      // Nothing may lapse or go stale while a slow machine runs the browser.
      '--ack-timeout', '600', '--stale-after', '600'];
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

after(async () => {
  if (context) await context.close().catch(() => {});
  if (gateway) gateway.close();
  await stopServer(server);
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

  await t.test('after a server restart the page reconnects to a fresh snapshot without duplicates', async () => {
    const markersBefore = await hook(() => window.__console.incidentMarkerCount());
    const port = server.port;
    gateway.close();
    await stopServer(server);
    await waitFor('the page to notice', () => hook(() => window.__console.connection() !== 'live'));
    server = await waitFor('dispatchd to start again on the same port', () => startServer(`127.0.0.1:${port}`).catch(() => null), 20_000);
    gateway = new Gateway(server.port);
    await gateway.opened;
    gateway.positions(FLEET, Date.now());
    await waitFor('a second snapshot', () => hook(() => window.__console.snapshots()).then((n) => n >= 2), 40_000);
    await waitFor('live again', () => hook(() => window.__console.connection() === 'live'));
    assert.equal(await hook(() => window.__console.unitCount()), FLEET.length);
    await waitFor('all units drawn again', () => hook(() => window.__console.unitsDrawn()).then((n) => n === FLEET.length));
    assert.equal(await hook(() => window.__console.incidentMarkerCount()), markersBefore);
    assert.equal(await page.locator('path.incident-marker').count(), markersBefore);
    assert.deepEqual(await hook(() => window.__console.queueIds()), [incidentId]);
  });

  assert.deepEqual(pageErrors, [], 'no script errors in the page');
});
