// The dispatch console: wires the store, the connection, the map and the panels.
import * as L from './node_modules/leaflet/dist/leaflet-src.esm.js';
import {
  Store, POLICY, SEVERITY_RANK, UNIT_STATUSES, activeAssignments, buildReport, candidatesFor,
  fmtDuration, incidentClocks, sortByUrgency,
} from './model.js';
import { Connection } from './connection.js';
import { UnitLayer, STATUS_COLOURS } from './unit-layer.js';

const SEVERITY_COLOURS = { minor: '#facc15', injury: '#fb923c', critical: '#ef4444' };
const KIND_LABEL = { moto: 'MOTO', car: 'CAR', heli: 'HELI' };
const QUEUE_MAX_ROWS = 200;
const CORE_VIEW = { center: [29.57, 106.53], zoom: 11 };

const params = new URLSearchParams(location.search);
const token = params.get('token') || '';
const $ = (id) => document.getElementById(id);

const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const hhmmss = (ts) => (ts == null ? '—' : new Date(ts).toLocaleTimeString('en-GB', { hour12: false }));
const fmtKm = (m) => (m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(m < 10_000 ? 2 : 1)} km`);
const apiUrl = (path) => `${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;

// ---------------------------------------------------------------- map

const map = L.map('map', {
  center: CORE_VIEW.center,
  zoom: CORE_VIEW.zoom,
  minZoom: 6,
  maxZoom: 18,
  zoomControl: true,
  attributionControl: true,
  worldCopyJump: false,
});
map.attributionControl.setPrefix('Leaflet');
map.createPane('districtPane').style.zIndex = 250;
map.createPane('unitPane').style.zIndex = 450;
map.createPane('incidentPane').style.zIndex = 460;
map.getPane('unitPane').style.pointerEvents = 'none';
const incidentRenderer = L.svg({ pane: 'incidentPane', padding: 0.3 });

const store = new Store();
const unitLayer = new UnitLayer(store).addTo(map);
const incidentLayer = L.layerGroup().addTo(map);
const placesLayer = L.layerGroup().addTo(map);
const districtLayer = L.layerGroup().addTo(map);
const pendingLayer = L.layerGroup().addTo(map);

L.control.layers(null, {
  Districts: districtLayer,
  'Units & assignment lines': unitLayer,
  Incidents: incidentLayer,
  'Landing zones & hospitals': placesLayer,
}, { position: 'topleft', collapsed: true }).addTo(map);

function updateLabelClass() {
  const z = map.getZoom();
  const c = map.getContainer().classList;
  c.toggle('labels-off', z < 7);
  c.toggle('labels-small', z >= 7 && z < 9);
}
map.on('zoomend', updateLabelClass);
updateLabelClass();

// Label at the centroid of a district's largest ring: good enough for a label and needs
// no geometry library.
function labelPoint(geometry) {
  const polys = geometry.type === 'Polygon' ? [geometry.coordinates] : geometry.type === 'MultiPolygon' ? geometry.coordinates : [];
  let best = null;
  let bestArea = 0;
  for (const poly of polys) {
    const ring = poly[0];
    let a = 0;
    let cx = 0;
    let cy = 0;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const f = ring[j][0] * ring[i][1] - ring[i][0] * ring[j][1];
      a += f;
      cx += (ring[j][0] + ring[i][0]) * f;
      cy += (ring[j][1] + ring[i][1]) * f;
    }
    if (Math.abs(a) > bestArea && a !== 0) {
      bestArea = Math.abs(a);
      best = [cy / (3 * a), cx / (3 * a)];
    }
  }
  return best;
}

async function loadDistricts() {
  try {
    const r = await fetch('/geo/districts.geojson');
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const gj = await r.json();
    const layer = L.geoJSON(gj, {
      pane: 'districtPane',
      interactive: false,
      style: (f) => ({
        color: f.properties?.urban ? '#3b5b8a' : '#2a3a55',
        weight: f.properties?.urban ? 1.4 : 1,
        fillColor: f.properties?.urban ? '#13233d' : '#0e1829',
        fillOpacity: 1,
      }),
    });
    districtLayer.addLayer(layer);
    for (const f of gj.features || []) {
      const p = f.geometry && labelPoint(f.geometry);
      if (!p || !f.properties?.name) continue;
      districtLayer.addLayer(L.tooltip({ permanent: true, direction: 'center', className: 'district-label', interactive: false })
        .setLatLng(p).setContent(esc(f.properties.name)));
    }
    debug.districts = (gj.features || []).length;
  } catch (e) {
    toast(`District boundaries not loaded: ${e.message}`, 'err');
  }
}

async function loadPlaces() {
  try {
    const r = await fetch('/geo/places.geojson');
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const gj = await r.json();
    const glyph = { hospital: '✚', landing_zone: 'H', heli_base: 'HB' };
    const size = { hospital: 16, landing_zone: 18, heli_base: 22 };
    placesLayer.addLayer(L.geoJSON(gj, {
      pointToLayer: (f, latlng) => {
        const p = f.properties || {};
        const kind = p.kind || 'landing_zone';
        const s = size[kind] || 16;
        const icon = L.divIcon({
          className: '',
          html: `<div class="place-icon place-${esc(kind)}${p.trauma ? ' trauma' : ''}" style="width:${s}px;height:${s}px">${glyph[kind] || '•'}</div>`,
          iconSize: [s, s],
          iconAnchor: [s / 2, s / 2],
        });
        const what = { hospital: p.trauma ? 'Trauma hospital' : 'Hospital', landing_zone: 'Landing zone', heli_base: 'Helicopter base' }[kind] || kind;
        const extra = kind === 'hospital' && p.helipad ? ' · helipad' : '';
        return L.marker(latlng, { icon, keyboard: false })
          .bindTooltip(`<b>${esc(p.name || p.id)}</b><br>${what}${extra}`, { className: 'dark-tip', direction: 'top', offset: [0, -s / 2] });
      },
    }));
    debug.places = (gj.features || []).length;
  } catch (e) {
    toast(`Places not loaded: ${e.message}`, 'err');
  }
}

// ---------------------------------------------------------------- incidents on the map

const incidentMarkers = new Map();

function incidentStyle(inc) {
  const colour = SEVERITY_COLOURS[inc.severity] || '#e5e7eb';
  const waiting = inc.state === 'dispatching' || inc.state === 'reported';
  return {
    radius: 8 + 2 * (SEVERITY_RANK[inc.severity] ?? 0),
    color: colour,
    weight: 3,
    fillColor: colour,
    fillOpacity: waiting ? 0.2 : 0.6,
    dashArray: inc.state === 'remote' ? '4 3' : null,
  };
}

function syncIncidentMarker(inc) {
  let m = incidentMarkers.get(inc.id);
  if (!inc || inc.lat == null || inc.lon == null || !store.incidents.has(inc.id)) {
    if (m) {
      incidentLayer.removeLayer(m);
      incidentMarkers.delete(inc.id);
    }
    return;
  }
  if (!m) {
    m = L.circleMarker([inc.lat, inc.lon], { renderer: incidentRenderer, className: 'incident-marker', ...incidentStyle(inc) });
    m.on('click', (ev) => {
      L.DomEvent.stopPropagation(ev);
      selectIncident(inc.id);
    });
    m.bindTooltip('', { className: 'dark-tip', direction: 'top', offset: [0, -8] });
    incidentLayer.addLayer(m);
    incidentMarkers.set(inc.id, m);
  } else {
    m.setLatLng([inc.lat, inc.lon]);
    m.setStyle(incidentStyle(inc));
  }
  m.setTooltipContent(`<b>${esc(inc.id)}</b> ${esc(inc.severity)} · ${esc(inc.state)}${inc.district ? `<br>${esc(inc.district)}` : ''}`);
  const el = m.getElement();
  if (el) {
    el.classList.toggle('selected', inc.id === selectedId);
    el.dataset.incident = inc.id;
  }
}

function rebuildIncidentMarkers() {
  incidentLayer.clearLayers();
  incidentMarkers.clear();
  for (const inc of store.incidents.values()) syncIncidentMarker(inc);
}

// ---------------------------------------------------------------- store events

let queueDirty = true;
let queueTimer = 0;
function scheduleQueue() {
  queueDirty = true;
  if (!queueTimer) queueTimer = setTimeout(() => { queueTimer = 0; renderQueue(); }, 150);
}

store.on((what, obj) => {
  if (what === 'unit') {
    unitLayer.markDirty();
    return;
  }
  if (what === 'snapshot') {
    rebuildIncidentMarkers();
    unitLayer.markDirty();
    scheduleQueue();
    renderStats();
    if (selectedId) refreshDetail(true);
    return;
  }
  if (what === 'incident') {
    syncIncidentMarker(obj);
    unitLayer.markDirty();
    scheduleQueue();
    if (obj.id === selectedId) {
      selectedLive = obj;
      refreshDetail(true);
    }
    if (awaitingSelect.has(obj.id)) {
      awaitingSelect.delete(obj.id);
      selectIncident(obj.id);
    }
  }
});

// ---------------------------------------------------------------- queue

let queueOrder = [];

function clockSpans(c) {
  const parts = [`<span class="clk">age <b>${fmtDuration(c.sinceReport)}</b></span>`];
  if (c.toAssign) {
    const late = c.toAssign.running && c.toAssign.ms > POLICY.assignTargetMs;
    parts.push(`<span class="clk${late ? ' late' : ''}">${c.toAssign.running ? 'unassigned' : 'assigned in'} <b>${fmtDuration(c.toAssign.ms)}</b></span>`);
  }
  if (c.ackWait) {
    parts.push(`<span class="clk${c.ackWait.overdue ? ' late' : ''}">ack wait <b>${fmtDuration(c.ackWait.ms)}</b></span>`);
  }
  if (c.remote) {
    parts.push(`<span class="clk${c.remote.overdue ? ' late' : ''}">liability ${c.remote.overdue ? 'overdue' : 'in'} <b>${fmtDuration(Math.abs(c.remote.remainingMs))}</b></span>`);
  }
  return parts.join('');
}

// Lists redraw every second; their elements are kept per key and only their contents
// change, so a click (press and release on the same element) is never lost to a redraw.
function reconcile(container, items, keyOf, create, update) {
  const existing = new Map();
  for (const el of [...container.children]) {
    if (el.dataset.key != null) existing.set(el.dataset.key, el);
    else el.remove();
  }
  let prev = null;
  for (const item of items) {
    const k = keyOf(item);
    let el = existing.get(k);
    if (el) existing.delete(k);
    else {
      el = create(item);
      el.dataset.key = k;
    }
    update(el, item);
    const next = prev ? prev.nextSibling : container.firstChild;
    if (next !== el) container.insertBefore(el, next);
    prev = el;
  }
  for (const el of existing.values()) el.remove();
}

function setHTML(el, html) {
  if (el._html !== html) {
    el.innerHTML = html;
    el._html = html;
  }
}

function renderQueue() {
  queueDirty = false;
  const now = store.now();
  const sorted = sortByUrgency([...store.incidents.values()], now);
  queueOrder = sorted.map((k) => k.inc.id);
  reconcile($('queue'), sorted.slice(0, QUEUE_MAX_ROWS), (k) => k.inc.id,
    (k) => {
      const li = document.createElement('li');
      li.dataset.id = k.inc.id;
      li.innerHTML = '<span class="sevbar"></span><div class="q-main"></div><div class="q-state"></div><div class="q-clocks"></div>';
      return li;
    },
    (li, { inc, c }) => {
      const cls = `qrow sev-${inc.severity}${c.overdue ? ' overdue' : ''}${inc.id === selectedId ? ' selected' : ''}`;
      if (li.className !== cls) li.className = cls;
      const units = activeAssignments(inc).map((a) => store.units.get(a.unit)?.callsign || a.unit);
      const [, main, state, clocks] = li.children;
      setHTML(main, `<span class="sev">${esc(inc.severity)}</span><span class="q-id" title="${esc(inc.id)}">${esc(inc.id)}</span><span class="q-district">${esc(inc.district || '')}</span>`);
      setHTML(state, `${c.overdue ? '<span class="late-tag">LATE</span>' : ''}<span class="state state-${esc(inc.state)}">${esc(inc.state)}</span>`);
      setHTML(clocks, `${clockSpans(c)}${units.length ? `<span class="clk">→ <b>${esc(units.join(', '))}</b></span>` : ''}`);
    });
  $('queue-more').hidden = sorted.length <= QUEUE_MAX_ROWS;
  $('queue-more').textContent = `+${sorted.length - QUEUE_MAX_ROWS} more, less urgent`;
  $('queue-count').textContent = String(sorted.length);
  $('queue-empty').hidden = sorted.length > 0;
  let overdue = 0;
  for (const k of sorted) if (k.c.overdue) overdue += 1;
  const waiting = sorted.filter((k) => k.inc.state === 'dispatching').length;
  const remote = sorted.filter((k) => k.inc.state === 'remote').length;
  setHTML($('incident-stats'),
    `<span class="stat">open <b>${sorted.length}</b></span>` +
    `<span class="stat${overdue ? ' alert' : ''}">overdue <b>${overdue}</b></span>` +
    `<span class="stat${waiting ? ' alert' : ''}">no unit <b>${waiting}</b></span>` +
    `<span class="stat">remote <b>${remote}</b></span>`);
  for (const { inc, c } of sorted) {
    const el = incidentMarkers.get(inc.id)?.getElement();
    if (el) el.classList.toggle('overdue', c.overdue);
  }
}

$('queue').addEventListener('click', (ev) => {
  const row = ev.target.closest('.qrow');
  if (row) selectIncident(row.dataset.id, { pan: true });
});

function renderStats() {
  const n = store.countByStatus();
  const label = { available: 'avail', assigned: 'paged', en_route: 'en route', on_scene: 'on scene', stale: 'stale', off_duty: 'off' };
  $('unit-stats').innerHTML = `<span class="stat">units <b>${store.units.size}</b></span>` +
    UNIT_STATUSES.map((s) => `<span class="stat" title="${s}"><span class="pip" style="--c:${STATUS_COLOURS[s]}"></span>${label[s]} <b>${n[s] || 0}</b></span>`).join('');
}

// ---------------------------------------------------------------- incident detail

let selectedId = null;
let selectedLive = null; // the object the socket last gave
let selectedRecord = null; // the full record from GET /api/incidents/{id}
let detailFetchTimer = 0;
const awaitingSelect = new Set();

function selected() {
  if (!selectedId) return null;
  const live = store.incidents.get(selectedId) || selectedLive;
  if (!selectedRecord) return live;
  if (!live) return selectedRecord;
  const merged = { ...selectedRecord, ...live };
  if ((selectedRecord.timeline?.length || 0) > (live.timeline?.length || 0)) merged.timeline = selectedRecord.timeline;
  return merged;
}

function selectIncident(id, { pan = false } = {}) {
  const inc = store.incidents.get(id);
  if (!inc) return;
  const prev = selectedId;
  selectedId = id;
  selectedLive = inc;
  if (prev !== id) selectedRecord = null;
  for (const [iid, m] of incidentMarkers) m.getElement()?.classList.toggle('selected', iid === id);
  $('detail').hidden = false;
  if (prev !== id) buildDetail();
  refreshDetail(true);
  fetchRecord();
  scheduleQueue();
  if (pan && inc.lat != null) map.panTo([inc.lat, inc.lon]);
}

function closeDetail() {
  selectedId = null;
  selectedLive = null;
  selectedRecord = null;
  $('detail').hidden = true;
  unitLayer.highlight.clear();
  unitLayer.markDirty();
  for (const m of incidentMarkers.values()) m.getElement()?.classList.remove('selected');
  scheduleQueue();
}
$('detail-close').addEventListener('click', closeDetail);

function fetchRecord() {
  clearTimeout(detailFetchTimer);
  const id = selectedId;
  detailFetchTimer = setTimeout(async () => {
    try {
      const r = await fetch(apiUrl(`/api/incidents/${encodeURIComponent(id)}`), { cache: 'no-store' });
      if (!r.ok) return;
      const rec = await r.json();
      if (id !== selectedId) return;
      selectedRecord = rec && rec.incident && !rec.id ? rec.incident : rec;
      refreshDetail(true);
    } catch {
      /* the live object is still shown */
    }
  }, 200);
}

// The parts that hold form input are built once per selected incident; the rest is
// redrawn on every change so typing is never lost to a refresh.
function buildDetail() {
  $('detail-body').innerHTML = `
    <div id="d-summary"></div>
    <div id="d-clocks" class="clocks"></div>
    <h3>Actions</h3>
    <div class="actions">
      <button type="button" id="d-close-inc" class="danger">Close incident</button>
      <button type="button" id="d-zoom">Zoom to</button>
    </div>
    <form id="liability-form" autocomplete="off">
      <div class="form-row"><label for="lia-fault">At fault</label>
        <input type="text" id="lia-fault" list="lia-plates" placeholder="plate, or none" required>
        <datalist id="lia-plates"></datalist></div>
      <div class="form-row"><label for="lia-note">Note</label><input type="text" id="lia-note" placeholder="optional"></div>
      <div class="form-row"><label></label><button type="submit" id="lia-submit">Record liability decision</button></div>
    </form>
    <h3>Assignments</h3>
    <table id="d-assignments" class="grid"><thead><tr><th>Unit</th><th>Task</th><th>State</th><th>Times</th><th></th></tr></thead><tbody></tbody></table>
    <p id="d-assignments-empty" class="note">No unit assigned yet.</p>
    <h3>Assign by hand</h3>
    <div class="form-row"><label for="cand-kind">Kind</label>
      <select id="cand-kind"><option value="">any</option><option value="moto">moto team</option><option value="car">survey car</option><option value="heli">helicopter</option></select>
      <label class="inline"><input type="checkbox" id="cand-busy"> busy units too</label></div>
    <table id="d-candidates" class="grid"><thead><tr><th>Unit</th><th class="num">Distance</th><th class="num">ETA</th><th></th></tr></thead><tbody></tbody></table>
    <p id="d-candidates-note" class="note" hidden></p>
    <h3>Timeline</h3>
    <ol id="d-timeline" class="timeline"></ol>`;
  armTwoStep($('d-close-inc'), 'Confirm close', () => {
    const inc = selected();
    if (inc) sendCommand({ type: 'close', incident: inc.id }, `Close sent for ${inc.id}`);
  });
  $('d-zoom').addEventListener('click', () => {
    const inc = selected();
    if (inc?.lat != null) map.setView([inc.lat, inc.lon], Math.max(map.getZoom(), 14));
  });
  $('liability-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const inc = selected();
    const atFault = $('lia-fault').value.trim();
    if (!inc || !atFault) return;
    const msg = { type: 'liability', incident: inc.id, at_fault: atFault };
    const note = $('lia-note').value.trim();
    if (note) msg.note = note;
    if (sendCommand(msg, `Liability for ${inc.id}: ${atFault}`)) {
      $('lia-fault').value = '';
      $('lia-note').value = '';
    }
  });
  $('cand-kind').addEventListener('change', renderCandidates);
  $('cand-busy').addEventListener('change', renderCandidates);
  $('d-candidates').addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-unit]');
    const inc = selected();
    if (!b || !inc) return;
    const u = store.units.get(b.dataset.unit);
    sendCommand({ type: 'assign', incident: inc.id, unit: b.dataset.unit }, `Assign ${u?.callsign || b.dataset.unit} → ${inc.id} sent`);
  });
  $('d-assignments').addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-assignment]');
    if (!b) return;
    if (b.dataset.armed !== '1') {
      b.dataset.armed = '1';
      b.textContent = 'Confirm';
      setTimeout(() => { if (b.isConnected) { b.dataset.armed = ''; b.textContent = 'Cancel'; } }, 3000);
      return;
    }
    sendCommand({ type: 'cancel', assignment: b.dataset.assignment }, `Cancel sent for ${b.dataset.assignment}`);
  });
}

// A destructive button asks once more before it acts.
function armTwoStep(button, confirmText, act) {
  const text = button.textContent;
  button.addEventListener('click', () => {
    if (button.dataset.armed !== '1') {
      button.dataset.armed = '1';
      button.textContent = confirmText;
      setTimeout(() => { button.dataset.armed = ''; button.textContent = text; }, 3000);
      return;
    }
    button.dataset.armed = '';
    button.textContent = text;
    act();
  });
}

function refreshDetail(full) {
  const inc = selected();
  if (!inc || $('detail').hidden) return;
  const open = store.incidents.has(inc.id);
  if (full) {
    $('detail-title').innerHTML = `<span class="sev sev-${esc(inc.severity)}">${esc(inc.severity)}</span> ${esc(inc.id)}`;
    const vehicles = (inc.vehicles || []).map((v) => `${esc(v.plate)}${v.insurer ? ` (${esc(v.insurer)})` : ''}`).join(', ');
    const flags = [];
    if (inc.injured != null) flags.push(`injured ${esc(inc.injured)}`);
    if (inc.drivable != null) flags.push(inc.drivable ? 'drivable' : 'not drivable');
    if (inc.parties_agree != null) flags.push(inc.parties_agree ? 'parties agree' : 'parties disagree');
    $('d-summary').innerHTML = `<dl class="kv">
      <dt>State</dt><dd><span class="state state-${esc(inc.state)}">${esc(inc.state)}</span></dd>
      <dt>District</dt><dd>${esc(inc.district || '—')}</dd>
      <dt>Report</dt><dd>${esc(inc.report_id || '—')}</dd>
      <dt>Reported</dt><dd>${hhmmss(inc.reported_ts)}</dd>
      <dt>Position</dt><dd>${inc.lat?.toFixed?.(5) ?? '—'}, ${inc.lon?.toFixed?.(5) ?? '—'}</dd>
      ${flags.length ? `<dt>Details</dt><dd>${flags.join(' · ')}</dd>` : ''}
      ${vehicles ? `<dt>Vehicles</dt><dd>${vehicles}</dd>` : ''}
      ${inc.note ? `<dt>Note</dt><dd>${esc(inc.note)}</dd>` : ''}
      ${inc.at_fault ? `<dt>At fault</dt><dd>${esc(inc.at_fault)}</dd>` : ''}
    </dl>`;
    $('lia-plates').innerHTML = ['none', ...(inc.vehicles || []).map((v) => v.plate).filter(Boolean)]
      .map((p) => `<option value="${esc(p)}">`).join('');
    $('d-close-inc').disabled = !open;
    $('lia-submit').disabled = !open;
    $('liability-form').classList.toggle('emph', inc.state === 'remote');

    const list = inc.assignments || [];
    $('d-assignments-empty').hidden = list.length > 0;
    $('d-assignments').hidden = list.length === 0;
    reconcile($('d-assignments').tBodies[0], list, (a) => a.assignment,
      () => {
        const tr = document.createElement('tr');
        tr.innerHTML = '<td></td><td></td><td></td><td class="num"></td><td></td>';
        return tr;
      },
      (tr, a) => {
        const u = store.units.get(a.unit);
        const active = open && ['assigned', 'en_route', 'on_scene'].includes(a.state);
        const [unitTd, taskTd, stateTd, timesTd, actTd] = tr.children;
        setHTML(unitTd, `<span class="kind-tag">${esc(KIND_LABEL[u?.kind] || '?')}</span> ${esc(u?.callsign || a.unit)}`);
        setHTML(taskTd, esc(a.task || ''));
        setHTML(stateTd, `<span class="state state-${esc(a.state)}" title="${esc(a.reason || '')}">${esc(a.state)}</span>${a.reason && !active ? `<br><span class="muted">${esc(a.reason)}</span>` : ''}`);
        timesTd.title = 'assigned / acked / arrived; ETA when assigned';
        setHTML(timesTd, `${hhmmss(a.assigned_ts)}${a.eta_s != null ? ` <span class="muted">eta ${fmtDuration(a.eta_s * 1000)}</span>` : ''}<br>${a.acked_ts ? `ack +${fmtDuration(a.acked_ts - a.assigned_ts)}` : ''}${a.arrived_ts ? ` · arr +${fmtDuration(a.arrived_ts - a.assigned_ts)}` : ''}`);
        let b = actTd.querySelector('button');
        if (active && !b) {
          actTd.innerHTML = `<button type="button" class="danger" data-assignment="${esc(a.assignment)}">Cancel</button>`;
        } else if (!active && b) {
          actTd.innerHTML = '';
        }
      });

    const tl = [...(inc.timeline || [])].sort((a, b) => (a.ts ?? 0) - (b.ts ?? 0));
    $('d-timeline').innerHTML = tl.length
      ? tl.map((t) => `<li><span class="t">${hhmmss(t.ts)}</span><span><span class="ev">${esc(t.event)}</span> <span class="dt">${esc(typeof t.detail === 'object' && t.detail ? JSON.stringify(t.detail) : t.detail ?? '')}</span>${t.by ? ` <span class="by">${esc(t.by)}</span>` : ''}</span></li>`).join('')
      : '<li class="note">No events yet.</li>';

    unitLayer.highlight = new Set(activeAssignments(inc).map((a) => a.unit));
    unitLayer.markDirty();
    renderCandidates();
  }
  renderDetailClocks(inc, open);
}

function renderDetailClocks(inc, open) {
  const now = store.now();
  const c = incidentClocks(inc, now);
  const box = (lbl, val, late) => `<div class="clockbox${late ? ' late' : ''}"><div class="lbl">${lbl}</div><div class="val">${val}</div></div>`;
  const parts = [box('since report', fmtDuration(c.sinceReport), false)];
  if (c.toAssign) parts.push(box(c.toAssign.running ? 'unassigned for' : 'time to assign', fmtDuration(c.toAssign.ms), c.toAssign.running && c.toAssign.ms > POLICY.assignTargetMs));
  if (c.ackWait) parts.push(box(`waiting ack (${esc(store.units.get(c.ackWait.unit)?.callsign || c.ackWait.unit)})`, fmtDuration(c.ackWait.ms), c.ackWait.overdue));
  if (c.remote) parts.push(box(c.remote.overdue ? 'liability overdue' : 'liability due in', fmtDuration(Math.abs(c.remote.remainingMs)), c.remote.overdue));
  if (!open) parts.push(box('state', esc(inc.state), false));
  $('d-clocks').innerHTML = parts.join('');
}

function renderCandidates() {
  const inc = selected();
  const table = $('d-candidates');
  if (!inc || !table) return;
  const note = $('d-candidates-note');
  let list = [];
  if (store.incidents.has(inc.id)) {
    const kind = $('cand-kind').value;
    list = candidatesFor(inc, store.units.values(), { limit: 8, kinds: kind ? new Set([kind]) : null, includeBusy: $('cand-busy').checked });
    note.textContent = 'No assignable unit.';
  } else {
    note.textContent = 'The incident is no longer open.';
  }
  note.hidden = list.length > 0;
  table.hidden = list.length === 0;
  reconcile(table.tBodies[0], list, (c) => c.unit.id,
    (c) => {
      const tr = document.createElement('tr');
      tr.innerHTML = `<td></td><td class="num"></td><td class="num"></td><td><button type="button" class="primary" data-unit="${esc(c.unit.id)}">Assign</button></td>`;
      return tr;
    },
    (tr, c) => {
      const [nameTd, distTd, etaTd, actTd] = tr.children;
      setHTML(nameTd, `<span class="kind-tag">${esc(KIND_LABEL[c.unit.kind] || c.unit.kind)}</span> ${esc(c.unit.callsign)} <span class="muted">${esc(c.unit.id)}</span>${c.unit.status !== 'available' ? ` <span class="state state-${esc(c.unit.status)}" title="busy: assigning it cancels its task">${esc(c.unit.status)}</span>` : ''}`);
      setHTML(distTd, fmtKm(c.distanceM));
      setHTML(etaTd, fmtDuration(c.etaS * 1000));
      actTd.firstChild.disabled = !conn.live;
    });
}

// ---------------------------------------------------------------- reports from the map

// Reports sent but not yet accepted: report id -> {marker, report}. A report id names one
// incident however often it is sent, so after a reconnect they are simply sent again.
const pendingReports = new Map();

function settlePending(reportId) {
  const p = pendingReports.get(reportId);
  if (!p) return false;
  pendingLayer.removeLayer(p.marker);
  pendingReports.delete(reportId);
  return true;
}

function reportForm(latlng) {
  const div = document.createElement('div');
  div.innerHTML = `<form id="report-form" autocomplete="off">
    <h4>New accident report</h4>
    <div class="coords">${latlng.lat.toFixed(5)}, ${latlng.lng.toFixed(5)}</div>
    <div class="form-row"><label for="rf-severity">Severity</label>
      <select id="rf-severity" name="severity"><option value="minor">minor</option><option value="injury" selected>injury</option><option value="critical">critical</option></select></div>
    <div class="form-row"><label for="rf-injured">Injured</label><input type="number" id="rf-injured" name="injured" min="0" max="99" value="0"></div>
    <div class="checks"><label><input type="checkbox" id="rf-drivable" name="drivable"> drivable</label>
      <label><input type="checkbox" id="rf-agree" name="parties_agree"> parties agree</label></div>
    <div class="form-row"><label for="rf-plate">Plate</label><input type="text" id="rf-plate" name="plate" placeholder="渝A12345"></div>
    <div class="form-row"><label for="rf-insurer">Insurer</label><input type="text" id="rf-insurer" name="insurer" placeholder="PICC"></div>
    <div class="form-row"><label for="rf-note">Note</label><input type="text" id="rf-note" name="note"></div>
    <div class="actions"><button type="submit" class="primary" id="rf-submit">File report</button><button type="button" id="rf-cancel">Cancel</button></div>
  </form>`;
  const form = div.querySelector('form');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const report = buildReport({
      severity: f.get('severity'),
      injured: f.get('injured'),
      drivable: f.get('drivable') === 'on',
      parties_agree: f.get('parties_agree') === 'on',
      plate: f.get('plate'),
      insurer: f.get('insurer'),
      note: f.get('note'),
    }, latlng.lat, latlng.lng, store.now());
    if (!sendCommand(report, null)) return;
    const marker = L.circleMarker(latlng, { renderer: incidentRenderer, radius: 9, color: '#f8fafc', weight: 2, dashArray: '3 3', fillOpacity: 0, className: 'pending-marker' })
      .bindTooltip(`Report ${esc(report.id)}: waiting for the server`, { className: 'dark-tip' });
    pendingLayer.addLayer(marker);
    pendingReports.set(report.id, { marker, report });
    debug.lastReportId = report.id;
    map.closePopup();
    toast(`Report ${report.id} sent`);
  });
  div.querySelector('#rf-cancel').addEventListener('click', () => map.closePopup());
  L.DomEvent.disableClickPropagation(div);
  return div;
}

map.on('click', (ev) => {
  const u = unitLayer.hit(ev.containerPoint);
  if (u) showUnitPopup(u, ev.latlng);
  else openReportForm(ev.latlng);
});

function openReportForm(latlng) {
  L.popup({ className: 'report-popup', maxWidth: 300, autoPanPadding: [20, 20] })
    .setLatLng(latlng)
    .setContent(reportForm(latlng))
    .openOn(map);
  setTimeout(() => document.getElementById('rf-severity')?.focus(), 0);
}

function showUnitPopup(u, clickedAt) {
  const age = u.ts ? fmtDuration(store.now() - u.ts) : '—';
  const inc = selectedId && store.incidents.get(selectedId);
  const div = document.createElement('div');
  div.innerHTML = `<b>${esc(u.callsign)}</b> <span class="muted">${esc(u.id)}</span><br>
    <span class="kind-tag">${esc(KIND_LABEL[u.kind] || u.kind)}</span> <span class="state state-${esc(u.status)}">${esc(u.status)}</span><br>
    <span class="muted">last fix ${age} ago</span>${u.incident ? `<br>on <a href="#" data-act="open">${esc(u.incident)}</a>` : ''}
    <div class="actions">${inc && u.status === 'available' ? `<button type="button" class="primary" data-act="assign">Assign to ${esc(inc.id)}</button>` : ''}
      <button type="button" data-act="report">Report here</button></div>`;
  div.querySelector('[data-act=assign]')?.addEventListener('click', () => {
    sendCommand({ type: 'assign', incident: inc.id, unit: u.id }, `Assign ${u.callsign} → ${inc.id} sent`);
    map.closePopup();
  });
  div.querySelector('[data-act=open]')?.addEventListener('click', (ev) => {
    ev.preventDefault();
    map.closePopup();
    selectIncident(u.incident, { pan: true });
  });
  div.querySelector('[data-act=report]').addEventListener('click', () => openReportForm(clickedAt));
  L.popup({ className: 'unit-popup', offset: [0, -4] }).setLatLng([u.lat, u.lon]).setContent(div).openOn(map);
}

// ---------------------------------------------------------------- connection

function sendCommand(msg, okText) {
  if (!conn.send(msg)) {
    toast('Not connected: the command was not sent', 'err');
    return false;
  }
  if (okText) toast(okText);
  return true;
}

function onMessage(msg) {
  if (store.apply(msg)) return;
  if (msg.type === 'accepted') {
    if (settlePending(msg.id)) {
      toast(`Report accepted as incident ${msg.incident}`, 'ok');
      if (store.incidents.has(msg.incident)) selectIncident(msg.incident);
      else awaitingSelect.add(msg.incident);
    }
    debug.accepted.set(msg.id, msg.incident);
  } else if (msg.type === 'error') {
    if (msg.ref) settlePending(msg.ref);
    toast(`${msg.code || 'error'}: ${msg.message || ''}${msg.ref ? ` (${msg.ref})` : ''}`, 'err');
  }
}

let connDetail = {};
let lastLive = 0;
function onState(state, detail) {
  connDetail = detail;
  const el = $('conn');
  el.className = `conn conn-${state}`;
  // Everything shown while offline is as old as the last moment the socket was live.
  if (state === 'live') lastLive = 0;
  else if (!lastLive && store.snapshots) lastLive = store.now();
  document.body.classList.toggle('offline', state !== 'live' && store.snapshots > 0);
  $('offline-banner').textContent = lastLive ? `Connection lost: showing the situation as of ${hhmmss(lastLive)}` : '';
  renderConnText();
  if (state === 'live') {
    toast('Connected: snapshot loaded', 'ok');
    for (const { report } of pendingReports.values()) conn.send(report);
    if (selectedId && !store.incidents.has(selectedId)) refreshDetail(true);
  }
  renderCandidates();
}

function renderConnText() {
  const s = conn.state;
  let text = s;
  if (s === 'live') text = 'live';
  else if (s === 'connecting') text = connDetail.attempt ? `connecting (try ${connDetail.attempt + 1})` : 'connecting';
  else if (s === 'syncing') text = 'loading snapshot';
  else if (s === 'reconnecting') text = `offline · retry in ${Math.max(0, Math.ceil((connDetail.until - Date.now()) / 1000))} s`;
  else if (s === 'refused') text = `token refused · retry in ${Math.max(0, Math.ceil((connDetail.until - Date.now()) / 1000))} s`;
  else if (s === 'notoken') text = 'no token';
  $('conn-text').textContent = text;
}

const wsScheme = location.protocol === 'https:' ? 'wss' : 'ws';
const conn = new Connection({
  url: `${wsScheme}://${location.host}/ws/console?token=${encodeURIComponent(token)}&batch=1`,
  probeUrl: apiUrl('/api/units'),
  onMessage,
  onState,
});

// ---------------------------------------------------------------- toasts, clock, tools

function toast(text, kind = '') {
  const el = document.createElement('div');
  el.className = `toast ${kind}`;
  el.textContent = text;
  $('toasts').appendChild(el);
  while ($('toasts').children.length > 4) $('toasts').firstChild.remove();
  setTimeout(() => el.remove(), kind === 'err' ? 8000 : 4000);
}

let tickCount = 0;
setInterval(() => {
  tickCount += 1;
  $('clock').textContent = new Date(store.now()).toLocaleTimeString('en-GB', { hour12: false });
  renderQueue();
  renderStats();
  renderConnText();
  const inc = selected();
  if (inc && !$('detail').hidden) {
    renderDetailClocks(inc, store.incidents.has(inc.id));
    if (tickCount % 2 === 0) renderCandidates();
  }
}, 1000);

$('fit-units').addEventListener('click', () => {
  const pts = [];
  for (const u of store.units.values()) if (u.lat != null) pts.push([u.lat, u.lon]);
  if (pts.length) map.fitBounds(L.latLngBounds(pts).pad(0.1), { maxZoom: 15 });
});
$('fit-city').addEventListener('click', () => map.fitBounds([[28.16, 105.29], [32.2, 110.2]]));
$('fit-core').addEventListener('click', () => map.setView(CORE_VIEW.center, CORE_VIEW.zoom));
document.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape') {
    map.closePopup();
    if (!$('detail').hidden) closeDetail();
  }
});

// ---------------------------------------------------------------- read-only hook for tests

const debug = {
  districts: 0,
  places: 0,
  accepted: new Map(),
  lastReportId: null,
};
window.__console = Object.freeze({
  connection: () => conn.state,
  snapshots: () => store.snapshots,
  unitCount: () => store.units.size,
  unitsDrawn: () => unitLayer.drawn,
  unitPosition: (id) => unitLayer.drawnAt(id),
  unitPixel: (id) => unitLayer.pixelAt(id),
  unitStatus: (id) => store.units.get(id)?.status ?? null,
  incidentIds: () => [...store.incidents.keys()],
  incident: (id) => structuredClone(store.incidents.get(id) ?? null),
  incidentMarkerCount: () => incidentMarkers.size,
  incidentOnMap: (id) => {
    const m = incidentMarkers.get(id);
    if (!m) return null;
    const p = map.latLngToContainerPoint(m.getLatLng());
    return { lat: m.getLatLng().lat, lon: m.getLatLng().lng, x: p.x, y: p.y };
  },
  queueIds: () => [...$('queue').querySelectorAll('.qrow')].map((r) => r.dataset.id),
  acceptedIncident: (reportId) => debug.accepted.get(reportId) ?? null,
  lastReportId: () => debug.lastReportId,
  districtCount: () => debug.districts,
  placeCount: () => debug.places,
  containerPoint: (lat, lon) => {
    const p = map.latLngToContainerPoint([lat, lon]);
    return { x: p.x, y: p.y };
  },
  selectedIncident: () => selectedId,
  // Cost of keeping up: last canvas redraw, frames drawn, messages and time spent on them.
  stats: () => ({ drawMs: unitLayer.drawMs, frames: unitLayer.frames, messages: conn.messages, handledMs: conn.handledMs }),
});

// ---------------------------------------------------------------- start

renderStats();
renderQueue();
loadDistricts();
loadPlaces();
if (!token) {
  $('notoken').hidden = false;
  conn.state = 'notoken';
  onState('notoken', {});
} else {
  conn.start();
}
