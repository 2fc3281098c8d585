// The dispatch console: wires the store, the connection, the map and the panels.
import * as L from './node_modules/leaflet/dist/leaflet-src.esm.js';
import {
  Store, Alerts, SEVERITY_RANK, UNIT_STATUSES, activeAssignments, buildReport, candidatesFor,
  fmtDuration, incidentClocks, sortByUrgency, rescueChain, historyQuery, matchesHistory, replaySpan,
  trackAt, parseServers, incidentsToCsv,
} from './model.js';
import { Connection } from './connection.js';
import { UnitLayer, STATUS_COLOURS } from './unit-layer.js';
import { t, word, setLang, getLang, reasonText } from './i18n.js';

const SEVERITY_COLOURS = { minor: '#facc15', injury: '#fb923c', critical: '#ef4444' };
const REPLAY_COLOURS = ['#38bdf8', '#f472b6', '#a3e635', '#fbbf24', '#c084fc', '#f87171'];
const QUEUE_MAX_ROWS = 200;
const CORE_VIEW = { center: [29.57, 106.53], zoom: 11 };
const LANG_KEY = 'dispatch.console.lang';

const params = new URLSearchParams(location.search);
const token = params.get('token') || '';
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- language

let langChosen = false; // by ?lang= or the switch (remembered): then the server's default does not apply
try {
  const chosen = params.get('lang') || localStorage.getItem(LANG_KEY);
  langChosen = !!chosen;
  setLang(chosen || 'zh-CN');
} catch {
  setLang('zh-CN');
}

// Static text carries data-i18n (text), data-i18n-title, data-i18n-aria.
function applyStatic(root = document) {
  document.documentElement.lang = getLang();
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.dataset.i18nAria));
}
applyStatic();

const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const pad2 = (n) => String(n).padStart(2, '0');
const hhmmss = (ts) => {
  if (ts == null) return '—';
  const d = new Date(ts);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
};
const fmtDateTime = (ts) => {
  if (ts == null) return '—';
  const d = new Date(ts);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${hhmmss(ts)}`;
};
const fmtKm = (m) => (m == null ? '—' : m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(m < 10_000 ? 2 : 1)} km`);
const kindTag = (kind) => `<span class="kind-tag">${esc(word('kind', kind || '?'))}</span>`;
const sevTag = (sev) => `<span class="sev sev-${esc(sev)}">${esc(word('sev', sev))}</span>`;
const stateTag = (group, state, title = '') => `<span class="state state-${esc(state)}"${title ? ` title="${esc(title)}"` : ''}>${esc(word(group, state))}</span>`;

// The server REST calls go to: this page's own, or the one the connection moved to.
let serverBase = '';
const apiUrl = (path) => `${serverBase}${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;

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
map.createPane('roadPane').style.zIndex = 300;
map.createPane('routePane').style.zIndex = 420;
map.createPane('unitPane').style.zIndex = 450;
map.createPane('incidentPane').style.zIndex = 460;
map.createPane('hazardPane').style.zIndex = 620;
map.getPane('unitPane').style.pointerEvents = 'none';
map.getPane('roadPane').style.pointerEvents = 'none';
const incidentRenderer = L.svg({ pane: 'incidentPane', padding: 0.3 });
const roadRenderer = L.canvas({ pane: 'roadPane', padding: 0.2 });

const store = new Store();
const alerts = new Alerts();
const unitLayer = new UnitLayer(store).addTo(map);
const incidentLayer = L.layerGroup().addTo(map);
const placesLayer = L.layerGroup().addTo(map);
const districtLayer = L.layerGroup().addTo(map);
const pendingLayer = L.layerGroup().addTo(map);
const hazardLayer = L.layerGroup().addTo(map);
const routeLayer = L.layerGroup().addTo(map);
const replayLayer = L.layerGroup().addTo(map);
let roadLayer = null;
let tileLayer = null;
let layerControl = null;

function buildLayerControl() {
  if (layerControl) layerControl.remove();
  const overlays = {
    [t('layer.districts')]: districtLayer,
    [t('layer.units')]: unitLayer,
    [t('layer.incidents')]: incidentLayer,
    [t('layer.places')]: placesLayer,
    [t('layer.hazards')]: hazardLayer,
    [t('layer.routes')]: routeLayer,
    [t('layer.replay')]: replayLayer,
  };
  if (roadLayer) overlays[t('layer.roads')] = roadLayer;
  const bases = tileLayer ? { [t('layer.tiles')]: tileLayer } : null;
  layerControl = L.control.layers(bases, overlays, { position: 'topleft', collapsed: true }).addTo(map);
}
buildLayerControl();

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
        fillOpacity: tileLayer ? 0.15 : 1,
      }),
    });
    districtLayer.addLayer(layer);
    debug.districtGeo = layer;
    const names = [];
    for (const f of gj.features || []) {
      if (f.properties?.name) names.push(f.properties.name);
      const p = f.geometry && labelPoint(f.geometry);
      if (!p || !f.properties?.name) continue;
      districtLayer.addLayer(L.tooltip({ permanent: true, direction: 'center', className: 'district-label', interactive: false })
        .setLatLng(p).setContent(esc(f.properties.name)));
    }
    const sel = $('hist-district');
    for (const n of [...new Set(names)].sort((a, b) => a.localeCompare(b, 'zh-CN'))) {
      const o = document.createElement('option');
      o.value = n;
      o.textContent = n;
      sel.appendChild(o);
    }
    debug.districts = (gj.features || []).length;
  } catch (e) {
    toast(t('toast.districtsFailed', { err: e.message }), 'err');
  }
}

// Station ids to names, from the places file (a station's hazards and sightings name it by id).
const placeNames = new Map();
const stationName = (id) => (id == null ? '' : placeNames.get(id) || String(id));

async function loadPlaces() {
  try {
    const r = await fetch('/geo/places.geojson');
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const gj = await r.json();
    for (const f of gj.features || []) if (f.properties?.id) placeNames.set(f.properties.id, f.properties.name || f.properties.id);
    const glyph = { hospital: '✚', landing_zone: 'H', heli_base: 'HB', station: '站' };
    const size = { hospital: 16, landing_zone: 18, heli_base: 22, station: 16 };
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
        const what = kind === 'hospital' && p.trauma ? t('place.trauma') : word('place', kind);
        const extra = kind === 'hospital' && p.helipad ? ` · ${t('place.helipad')}` : '';
        return L.marker(latlng, { icon, keyboard: false })
          .bindTooltip(`<b>${esc(p.name || p.id)}</b><br>${esc(what)}${extra}`, { className: 'dark-tip', direction: 'top', offset: [0, -s / 2] });
      },
    }));
    debug.places = (gj.features || []).length;
  } catch (e) {
    toast(t('toast.placesFailed', { err: e.message }), 'err');
  }
}

// The road network, when the server loaded one (404 otherwise: then no layer at all).
async function loadRoads() {
  try {
    const r = await fetch('/geo/roads.geojson');
    if (!r.ok) return;
    const gj = await r.json();
    roadLayer = L.geoJSON(gj, {
      renderer: roadRenderer,
      interactive: false,
      style: () => ({ color: '#475569', weight: 1, opacity: 0.7 }),
    }).addTo(map);
    debug.roads = (gj.features || []).length;
    buildLayerControl();
  } catch {
    /* no roads: the districts are the map */
  }
}

// The operator's own tile server, when the server's config names one.
function syncTiles() {
  const url = store.policy.tiles;
  if (!url || (tileLayer && tileLayer._url === url)) return;
  if (tileLayer) tileLayer.remove();
  tileLayer = L.tileLayer(url, { maxZoom: 18, attribution: esc(store.config?.tiles_attribution || '') }).addTo(map);
  tileLayer.bringToBack();
  debug.districtGeo?.setStyle({ fillOpacity: 0.15 });
  debug.tiles = url;
  buildLayerControl();
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

function incidentTip(inc) {
  return `<b>${esc(inc.id)}</b> ${esc(word('sev', inc.severity))} · ${esc(word('state', inc.state))}${inc.district ? `<br>${esc(inc.district)}` : ''}`;
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
  m.setTooltipContent(incidentTip(inc));
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

// ---------------------------------------------------------------- hazards on the map

const hazardMarkers = new Map();

function syncHazard(h) {
  const id = String(h.hazard);
  let m = hazardMarkers.get(id);
  if (typeof h.lat !== 'number' || typeof h.lon !== 'number') return;
  const cleared = h.state === 'cleared';
  const icon = L.divIcon({
    className: '',
    html: `<div class="hazard-icon${cleared ? ' cleared' : ''}" data-hazard="${esc(id)}">!</div>`,
    iconSize: [20, 18],
    iconAnchor: [10, 12],
  });
  if (!m) {
    m = L.marker([h.lat, h.lon], { icon, pane: 'hazardPane', keyboard: false });
    m.on('click', (ev) => {
      L.DomEvent.stopPropagation(ev);
      showHazardPopup(id);
    });
    hazardLayer.addLayer(m);
    hazardMarkers.set(id, m);
  } else {
    m.setLatLng([h.lat, h.lon]);
    m.setIcon(icon);
  }
  m.bindTooltip(`<b>${esc(t('hazard.title', { id }))}</b><br>${esc(word('hazardKind', h.kind))} · ${esc(word('hazard', cleared ? 'cleared' : 'open'))}`, { className: 'dark-tip', direction: 'top' });
}

function rebuildHazards() {
  hazardLayer.clearLayers();
  hazardMarkers.clear();
  for (const h of store.hazards.values()) syncHazard(h);
}

function showHazardPopup(id) {
  const h = store.hazards.get(id);
  if (!h) return;
  const cleared = h.state === 'cleared';
  const div = document.createElement('div');
  div.className = 'hazard-popup';
  div.innerHTML = `<b>${esc(t('hazard.title', { id }))}</b> ${stateTag('hazard', cleared ? 'cleared' : 'open')}<br>
    ${esc(word('hazardKind', h.kind))}${h.note ? ` · ${esc(h.note)}` : ''}<br>
    <span class="muted">${esc(t('hazard.station'))} ${esc(stationName(h.station) || '—')} · ${fmtDateTime(h.ts)}${cleared && h.cleared_ts ? ` · ${esc(word('hazard', 'cleared'))} ${hhmmss(h.cleared_ts)}` : ''}</span>
    <div class="actions">${cleared ? '' : `<button type="button" class="primary" data-act="clear">${esc(t('hazard.clear'))}</button>`}</div>`;
  div.querySelector('[data-act=clear]')?.addEventListener('click', () => {
    sendCommand({ type: 'clear_hazard', hazard: h.hazard }, t('toast.clearHazardSent', { hazard: id }));
    map.closePopup();
  });
  L.popup({ className: 'unit-popup' }).setLatLng([h.lat, h.lon]).setContent(div).openOn(map);
}

// ---------------------------------------------------------------- store events

let queueTimer = 0;
function scheduleQueue() {
  if (!queueTimer) queueTimer = setTimeout(() => { queueTimer = 0; renderQueue(); }, 150);
}

store.on((what, obj) => {
  if (what === 'unit') {
    unitLayer.markDirty();
    if (obj.status === 'stale' && obj._prevStatus && obj._prevStatus !== 'stale') {
      raiseAlert(`stale:${obj.id}`, { kind: 'stale', unit: obj.id, textKey: 'alert.stale', vars: { unit: obj.callsign || obj.id } });
    } else if (obj.status !== 'stale' && obj._prevStatus === 'stale') {
      alerts.resolve(`stale:${obj.id}`);
      scheduleAlerts();
    }
    return;
  }
  if (what === 'snapshot') {
    // The server's default language, unless this dispatcher chose one.
    const dflt = store.config?.lang_default;
    if (!langChosen && typeof dflt === 'string' && dflt !== getLang() && (dflt === 'en' || dflt === 'zh-CN')) switchLang(dflt, false);
    rebuildIncidentMarkers();
    rebuildHazards();
    syncTiles();
    unitLayer.markDirty();
    scheduleQueue();
    renderStats();
    if (selectedId) refreshDetail(true);
    return;
  }
  if (what === 'hazard') {
    syncHazard(obj);
    return;
  }
  if (what === 'alert') {
    if (obj.alert === 'overdue' && obj.incident) {
      raiseAlert(`overdue:${obj.incident}:${obj.clock}`, { kind: 'overdue', incident: obj.incident, ts: obj.ts,
        textKey: 'alert.overdue', vars: { incident: obj.incident, clock: word('clock', obj.clock) } });
    }
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

// ---------------------------------------------------------------- alerts

let alertsTimer = 0;
function scheduleAlerts() {
  if (!alertsTimer) alertsTimer = setTimeout(() => { alertsTimer = 0; renderAlerts(); }, 100);
}

function raiseAlert(key, a) {
  if (alerts.raise(key, { ts: store.now(), ...a })) {
    scheduleAlerts();
    // Stale units can come by the dozen: those only count on the tab.
    if (a.kind !== 'stale') toast(`⚠ ${t(a.textKey, a.vars)}`, 'err');
    return true;
  }
  return false;
}

// Our own clock's view of what is late, raised once each (the server's alerts share keys).
function checkLocalAlerts(sorted) {
  for (const { inc, c } of sorted) {
    if (c.ackWait?.overdue) {
      const u = store.units.get(c.ackWait.unit);
      raiseAlert(`ack:${inc.id}:${c.ackWait.unit}`, { kind: 'overdue', incident: inc.id, textKey: 'alert.ackOverdue', vars: { incident: inc.id, unit: u?.callsign || c.ackWait.unit } });
    }
    if (c.remote?.overdue) {
      raiseAlert(`overdue:${inc.id}:liability`, { kind: 'overdue', incident: inc.id, textKey: 'alert.overdue', vars: { incident: inc.id, clock: word('clock', 'liability') } });
    }
    for (const k of c.clocks) {
      if (!k.overdue || k.done) continue;
      raiseAlert(`overdue:${inc.id}:${k.clock}`, { kind: 'overdue', incident: inc.id, textKey: 'alert.overdue', vars: { incident: inc.id, clock: word('clock', k.clock) } });
    }
  }
}

function renderAlerts() {
  const list = alerts.active();
  const live = list.filter((a) => !a.resolved).length;
  $('alert-count').textContent = String(live);
  $('alert-count').classList.toggle('hot', live > 0);
  $('alerts-empty').hidden = list.length > 0;
  reconcile($('alerts'), list, (a) => a.key,
    () => {
      const li = document.createElement('li');
      li.innerHTML = '<span class="a-time"></span><span class="a-text"></span><button type="button" class="icon-btn a-dismiss">✕</button>';
      return li;
    },
    (li, a) => {
      li.className = `alert-item alert-${a.kind}${a.resolved ? ' resolved' : ''}`;
      li.dataset.incident = a.incident || '';
      li.dataset.hazard = a.hazard || '';
      li.dataset.alertKey = a.key;
      const [time, text, btn] = li.children;
      setHTML(time, hhmmss(a.ts));
      setHTML(text, esc(t(a.textKey, a.vars)));
      btn.title = t('alerts.dismiss');
    });
}

$('alerts').addEventListener('click', (ev) => {
  const li = ev.target.closest('li.alert-item');
  if (!li) return;
  if (ev.target.closest('.a-dismiss')) {
    alerts.dismiss(li.dataset.alertKey);
    renderAlerts();
    return;
  }
  if (li.dataset.incident) openIncident(li.dataset.incident, { pan: true });
  else if (li.dataset.hazard) {
    const h = store.hazards.get(li.dataset.hazard);
    if (h) {
      map.setView([h.lat, h.lon], Math.max(map.getZoom(), 13));
      showHazardPopup(li.dataset.hazard);
    }
  }
});
$('alerts-clear').addEventListener('click', () => {
  alerts.dismissAll();
  renderAlerts();
});

// ---------------------------------------------------------------- side tabs

function showTab(id) {
  for (const b of document.querySelectorAll('.tab')) b.classList.toggle('active', b.dataset.tab === id);
  for (const p of document.querySelectorAll('#side .panel')) p.hidden = p.id !== id;
}
document.querySelector('.tabs').addEventListener('click', (ev) => {
  const b = ev.target.closest('.tab');
  if (b) showTab(b.dataset.tab);
});

// ---------------------------------------------------------------- queue

function clockSpans(c) {
  const P = store.policy;
  const parts = [`<span class="clk">${esc(t('clk.age'))} <b>${fmtDuration(c.sinceReport)}</b></span>`];
  if (c.toAssign) {
    const late = c.toAssign.running && c.toAssign.ms > P.assignTargetMs;
    parts.push(`<span class="clk${late ? ' late' : ''}">${esc(t(c.toAssign.running ? 'clk.unassigned' : 'clk.assignedIn'))} <b>${fmtDuration(c.toAssign.ms)}</b></span>`);
  }
  if (c.ackWait) {
    parts.push(`<span class="clk${c.ackWait.overdue ? ' late' : ''}">${esc(t('clk.ackWait'))} <b>${fmtDuration(c.ackWait.ms)}</b></span>`);
  }
  if (c.remote) {
    parts.push(`<span class="clk${c.remote.overdue ? ' late' : ''}">${esc(t(c.remote.overdue ? 'clk.liabilityOver' : 'clk.liabilityIn'))} <b>${fmtDuration(Math.abs(c.remote.remainingMs))}</b></span>`);
  }
  for (const k of c.clocks) {
    if (k.done || !Number.isFinite(k.remainingMs) || (k.clock === 'liability' && c.remote)) continue;
    parts.push(`<span class="clk${k.overdue ? ' late' : ''}">${esc(word('clock', k.clock))} <b>${fmtDuration(k.remainingMs)}</b></span>`);
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
  const now = store.now();
  const sorted = sortByUrgency([...store.incidents.values()], now, store.policy);
  checkLocalAlerts(sorted);
  reconcile($('queue'), sorted.slice(0, QUEUE_MAX_ROWS), (k) => k.inc.id,
    (k) => {
      const li = document.createElement('li');
      li.dataset.id = k.inc.id;
      li.innerHTML = '<span class="sevbar"></span><div class="q-main"></div><div class="q-state"></div><div class="q-clocks"></div>';
      return li;
    },
    (li, { inc, c }) => {
      const cls = `qrow sev-${inc.severity}${c.overdue ? ' overdue' : ''}${inc.id === selectedId ? ' selected' : ''}${inc.signals?.length ? ' flagged' : ''}`;
      if (li.className !== cls) li.className = cls;
      const units = activeAssignments(inc).map((a) => store.units.get(a.unit)?.callsign || a.unit);
      const [, main, state, clocks] = li.children;
      setHTML(main, `${sevTag(inc.severity)}<span class="q-id" title="${esc(inc.id)}">${esc(inc.id)}</span><span class="q-district">${esc(inc.district || '')}</span>${inc.signals?.length ? '<span class="flag-tag">⚑</span>' : ''}${inc.rescue ? `<span class="kind-tag">${esc(word('kind', 'heli'))}</span>` : ''}`);
      setHTML(state, `${c.overdue ? `<span class="late-tag">${esc(t('queue.late'))}</span>` : ''}${stateTag('state', inc.state)}`);
      setHTML(clocks, `${clockSpans(c)}${units.length ? `<span class="clk">→ <b>${esc(units.join(', '))}</b></span>` : ''}`);
    });
  $('queue-more').hidden = sorted.length <= QUEUE_MAX_ROWS;
  $('queue-more').textContent = t('queue.more', { n: sorted.length - QUEUE_MAX_ROWS });
  $('queue-count').textContent = String(sorted.length);
  $('queue-empty').hidden = sorted.length > 0;
  let overdue = 0;
  for (const k of sorted) if (k.c.overdue) overdue += 1;
  const waiting = sorted.filter((k) => k.inc.state === 'dispatching').length;
  const remote = sorted.filter((k) => k.inc.state === 'remote').length;
  setHTML($('incident-stats'),
    `<span class="stat">${esc(t('stat.open'))} <b>${sorted.length}</b></span>` +
    `<span class="stat${overdue ? ' alert' : ''}">${esc(t('stat.overdue'))} <b>${overdue}</b></span>` +
    `<span class="stat${waiting ? ' alert' : ''}">${esc(t('stat.nounit'))} <b>${waiting}</b></span>` +
    `<span class="stat">${esc(t('stat.remote'))} <b>${remote}</b></span>`);
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
  setHTML($('unit-stats'), `<span class="stat">${esc(t('stat.units'))} <b>${store.units.size}</b></span>` +
    UNIT_STATUSES.map((s) => `<span class="stat" title="${esc(word('ustate', s))}"><span class="pip" style="--c:${STATUS_COLOURS[s]}"></span>${esc(word('ustate', s))} <b>${n[s] || 0}</b></span>`).join(''));
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

// Any incident, open or past: a past one is read from the store's record.
async function openIncident(id, { pan = false } = {}) {
  if (store.incidents.has(id)) {
    selectIncident(id, { pan });
    return;
  }
  try {
    const r = await fetch(apiUrl(`/api/incidents/${encodeURIComponent(id)}`), { cache: 'no-store' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const rec = await r.json();
    const prev = selectedId;
    selectedId = id;
    selectedLive = null;
    selectedRecord = rec && rec.incident && !rec.id ? rec.incident : rec;
    $('detail').hidden = false;
    if (prev !== id) buildDetail();
    refreshDetail(true);
    if (pan && selectedRecord.lat != null) map.panTo([selectedRecord.lat, selectedRecord.lon]);
  } catch (e) {
    toast(`${id}: ${e.message}`, 'err');
  }
}

function closeDetail() {
  selectedId = null;
  selectedLive = null;
  selectedRecord = null;
  $('detail').hidden = true;
  unitLayer.highlight.clear();
  unitLayer.markDirty();
  routeLayer.clearLayers();
  routeShown.clear();
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
    <div id="d-signals" class="signals" hidden></div>
    <h3>${esc(t('detail.actions'))}</h3>
    <div class="actions">
      <button type="button" id="d-escalate" class="primary" hidden>${esc(t('detail.escalate'))}</button>
      <input type="text" id="d-escalate-reason" placeholder="${esc(t('detail.escalateReason'))}" hidden>
      <button type="button" id="d-close-inc" class="danger">${esc(t('detail.closeInc'))}</button>
      <button type="button" id="d-zoom">${esc(t('detail.zoom'))}</button>
      <button type="button" id="d-replay">${esc(t('detail.replay'))}</button>
    </div>
    <form id="liability-form" autocomplete="off">
      <div class="form-row"><label for="lia-fault">${esc(t('detail.atFaultLabel'))}</label>
        <input type="text" id="lia-fault" list="lia-plates" placeholder="${esc(t('detail.atFaultPh'))}" required>
        <datalist id="lia-plates"></datalist></div>
      <div class="form-row"><label for="lia-note">${esc(t('detail.liaNote'))}</label><input type="text" id="lia-note" placeholder="${esc(t('detail.liaNotePh'))}"></div>
      <div class="form-row"><label></label><button type="submit" id="lia-submit">${esc(t('detail.liaSubmit'))}</button></div>
    </form>
    <div id="d-plate" class="plate-box" hidden></div>
    <div id="d-rescue-wrap" hidden>
      <h3>${esc(t('detail.rescue'))}</h3>
      <div id="d-rescue"></div>
    </div>
    <h3>${esc(t('detail.assignments'))}</h3>
    <table id="d-assignments" class="grid"><thead><tr><th>${esc(t('col.unit'))}</th><th>${esc(t('col.task'))}</th><th>${esc(t('col.state'))}</th><th>${esc(t('col.times'))}</th><th></th></tr></thead><tbody></tbody></table>
    <p id="d-assignments-empty" class="note">${esc(t('detail.noAssignment'))}</p>
    <div id="d-weighed-wrap" hidden>
      <h3>${esc(t('detail.weighed'))}</h3>
      <table id="d-weighed" class="grid"><thead><tr><th>${esc(t('col.unit'))}</th><th class="num">${esc(t('col.distance'))}</th><th class="num">${esc(t('col.eta'))}</th><th>${esc(t('col.why'))}</th></tr></thead><tbody></tbody></table>
    </div>
    <h3>${esc(t('detail.assignByHand'))}</h3>
    <div class="form-row"><label for="cand-kind">${esc(t('detail.kind'))}</label>
      <select id="cand-kind"><option value="">${esc(t('detail.anyKind'))}</option><option value="moto">${esc(t('kind.moto.long'))}</option><option value="car">${esc(t('kind.car.long'))}</option><option value="heli">${esc(t('kind.heli.long'))}</option></select>
      <label class="inline"><input type="checkbox" id="cand-busy"> ${esc(t('detail.busyToo'))}</label></div>
    <table id="d-candidates" class="grid"><thead><tr><th>${esc(t('col.unit'))}</th><th class="num">${esc(t('col.distance'))}</th><th class="num">${esc(t('col.eta'))}</th><th></th></tr></thead><tbody></tbody></table>
    <p id="d-candidates-note" class="note" hidden></p>
    <div id="d-claims-wrap" hidden><h3>${esc(t('detail.claims'))}</h3><div id="d-claims"></div></div>
    <h3>${esc(t('detail.timeline'))}</h3>
    <ol id="d-timeline" class="timeline"></ol>`;
  armTwoStep($('d-close-inc'), t('detail.closeConfirm'), () => {
    const inc = selected();
    if (inc) sendCommand({ type: 'close', incident: inc.id }, t('toast.closeSent', { incident: inc.id }));
  });
  armTwoStep($('d-escalate'), t('detail.escalateConfirm'), () => {
    const inc = selected();
    if (!inc) return;
    const msg = { type: 'escalate', incident: inc.id };
    const reason = $('d-escalate-reason').value.trim();
    if (reason) msg.reason = reason;
    if (sendCommand(msg, t('toast.escalateSent', { incident: inc.id }))) $('d-escalate-reason').value = '';
  });
  $('d-zoom').addEventListener('click', () => {
    const inc = selected();
    if (inc?.lat != null) map.setView([inc.lat, inc.lon], Math.max(map.getZoom(), 14));
  });
  $('d-replay').addEventListener('click', () => {
    const inc = selected();
    if (inc) startReplay(inc);
  });
  $('liability-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const inc = selected();
    const atFault = $('lia-fault').value.trim();
    if (!inc || !atFault) return;
    const msg = { type: 'liability', incident: inc.id, at_fault: atFault };
    const note = $('lia-note').value.trim();
    if (note) msg.note = note;
    if (sendCommand(msg, t('toast.liabilitySent', { incident: inc.id, at: atFault }))) {
      $('lia-fault').value = '';
      $('lia-note').value = '';
    }
  });
  $('d-signals').addEventListener('click', (ev) => {
    const a = ev.target.closest('a[data-plate], a[data-open]');
    if (!a) return;
    ev.preventDefault();
    if (a.dataset.plate) showPlate(a.dataset.plate);
    else openIncident(a.dataset.open, { pan: true });
  });
  $('d-summary').addEventListener('click', (ev) => {
    const a = ev.target.closest('a[data-plate]');
    if (!a) return;
    ev.preventDefault();
    showPlate(a.dataset.plate);
  });
  $('cand-kind').addEventListener('change', renderCandidates);
  $('cand-busy').addEventListener('change', renderCandidates);
  $('d-candidates').addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-unit]');
    const inc = selected();
    if (!b || !inc) return;
    const u = store.units.get(b.dataset.unit);
    sendCommand({ type: 'assign', incident: inc.id, unit: b.dataset.unit }, t('toast.assignSent', { unit: u?.callsign || b.dataset.unit, incident: inc.id }));
  });
  $('d-assignments').addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-assignment]');
    if (!b) return;
    if (b.dataset.armed !== '1') {
      b.dataset.armed = '1';
      b.textContent = t('detail.cancelConfirm');
      setTimeout(() => { if (b.isConnected) { b.dataset.armed = ''; b.textContent = t('detail.cancel'); } }, 3000);
      return;
    }
    sendCommand({ type: 'cancel', assignment: b.dataset.assignment }, t('toast.cancelSent', { assignment: b.dataset.assignment }));
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

// A fraud signal with its evidence: the sighting (station, time, distance) or the earlier
// incidents, each a link.
function signalText(s) {
  const parts = [`<b>${esc(word('signal', s.kind))}</b>`];
  if (s.detail) parts.push(`<span class="muted">${esc(typeof s.detail === 'object' ? JSON.stringify(s.detail) : s.detail)}</span>`);
  const e = s.sighting;
  if (e && typeof e === 'object') {
    parts.push(`<br>${esc(t('signal.sighting', { station: stationName(e.station) || '—', time: fmtDateTime(e.ts), km: e.distance_m != null ? (e.distance_m / 1000).toFixed(0) : '?' }))}`);
  }
  const plates = Array.isArray(s.plates) ? s.plates : [];
  if (plates.length) parts.push(`<br>${plates.map((p) => `<a href="#" data-plate="${esc(p)}">${esc(p)}</a>`).join(' ')}`);
  const incs = Array.isArray(s.incidents) ? s.incidents : [];
  if (incs.length) parts.push(`<br>${esc(t('signal.earlier'))} ${incs.slice(0, 10).map((i) => `<a href="#" data-open="${esc(i)}">${esc(i)}</a>`).join(' ')}`);
  return parts.join(' ');
}

function refreshDetail(full) {
  const inc = selected();
  if (!inc || $('detail').hidden) return;
  const open = store.incidents.has(inc.id);
  if (full) {
    $('detail-title').innerHTML = `${sevTag(inc.severity)} ${esc(inc.id)}`;
    const vehicles = (inc.vehicles || []).map((v) => `<a href="#" data-plate="${esc(v.plate)}">${esc(v.plate)}</a>${v.insurer ? ` (${esc(v.insurer)})` : ''}`).join(', ');
    const flags = [];
    if (inc.injured != null) flags.push(esc(t('detail.injured', { n: inc.injured })));
    if (inc.drivable != null) flags.push(esc(t(inc.drivable ? 'detail.drivable' : 'detail.notDrivable')));
    if (inc.parties_agree != null) flags.push(esc(t(inc.parties_agree ? 'detail.agree' : 'detail.disagree')));
    const hospital = inc.rescue?.hospital?.name || (typeof inc.hospital === 'string' ? inc.hospital : inc.hospital?.name);
    $('d-summary').innerHTML = `<dl class="kv">
      <dt>${esc(t('detail.state'))}</dt><dd>${stateTag('state', inc.state)}</dd>
      <dt>${esc(t('detail.district'))}</dt><dd>${esc(inc.district || '—')}</dd>
      <dt>${esc(t('detail.report'))}</dt><dd>${esc(inc.report_id || '—')}</dd>
      <dt>${esc(t('detail.reported'))}</dt><dd>${fmtDateTime(inc.reported_ts)}</dd>
      <dt>${esc(t('detail.position'))}</dt><dd>${inc.lat?.toFixed?.(5) ?? '—'}, ${inc.lon?.toFixed?.(5) ?? '—'}</dd>
      ${flags.length ? `<dt>${esc(t('detail.details'))}</dt><dd>${flags.join(' · ')}</dd>` : ''}
      ${vehicles ? `<dt>${esc(t('detail.vehicles'))}</dt><dd>${vehicles}</dd>` : ''}
      ${inc.note ? `<dt>${esc(t('detail.note'))}</dt><dd>${esc(inc.note)}</dd>` : ''}
      ${inc.at_fault ? `<dt>${esc(t('detail.atFault'))}</dt><dd>${esc(inc.at_fault)}</dd>` : ''}
      ${hospital ? `<dt>${esc(t('detail.hospital'))}</dt><dd>${esc(hospital)}</dd>` : ''}
    </dl>`;
    $('lia-plates').innerHTML = ['none', ...(inc.vehicles || []).map((v) => v.plate).filter(Boolean)]
      .map((p) => `<option value="${esc(p)}">`).join('');
    $('d-close-inc').disabled = !open;
    $('lia-submit').disabled = !open;
    $('d-escalate').hidden = !(open && inc.state === 'remote');
    $('d-escalate-reason').hidden = $('d-escalate').hidden;
    $('liability-form').classList.toggle('emph', inc.state === 'remote');

    // Fraud signals sit right above the liability decision, where they are weighed.
    const signals = Array.isArray(inc.signals) ? inc.signals : [];
    $('d-signals').hidden = signals.length === 0;
    $('d-signals').innerHTML = signals.length
      ? `<div class="signals-head">⚑ ${esc(t('detail.signals'))}</div><ul>${signals.map((s) => `<li data-signal="${esc(s.kind)}">${signalText(s)}</li>`).join('')}</ul>`
      : '';
    $('liability-form').before($('d-signals'));

    renderRescue(inc);

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
        tr.dataset.assignment = a.assignment;
        setHTML(unitTd, `${kindTag(u?.kind)} ${esc(u?.callsign || a.unit)}`);
        setHTML(taskTd, esc(word('task', a.task)));
        setHTML(stateTd, `${stateTag('astate', a.state, reasonText(a.reason))}${a.reason && !active ? `<br><span class="muted">${esc(reasonText(a.reason))}</span>` : ''}`);
        timesTd.title = t('times.title');
        setHTML(timesTd, `${hhmmss(a.assigned_ts)}${a.eta_s != null ? ` <span class="muted">${esc(t('times.eta', { d: fmtDuration(a.eta_s * 1000) }))}</span>` : ''}<br>${a.acked_ts ? esc(t('times.ack', { d: fmtDuration(a.acked_ts - a.assigned_ts) })) : ''}${a.arrived_ts ? ` · ${esc(t('times.arr', { d: fmtDuration(a.arrived_ts - a.assigned_ts) }))}` : ''}`);
        const b = actTd.querySelector('button');
        if (active && !b) {
          actTd.innerHTML = `<button type="button" class="danger" data-assignment="${esc(a.assignment)}">${esc(t('detail.cancel'))}</button>`;
        } else if (!active && b) {
          actTd.innerHTML = '';
        }
      });

    renderWeighed(inc);
    renderClaims(inc);

    const tl = [...(inc.timeline || [])].sort((a, b) => (a.ts ?? 0) - (b.ts ?? 0));
    $('d-timeline').innerHTML = tl.length
      ? tl.map((e) => `<li><span class="t">${hhmmss(e.ts)}</span><span><span class="ev">${esc(word('ev', e.event))}</span> <span class="dt">${esc(typeof e.detail === 'object' && e.detail ? JSON.stringify(e.detail) : e.detail ?? '')}</span>${e.by ? ` <span class="by">${esc(e.by)}</span>` : ''}</span></li>`).join('')
      : `<li class="note">${esc(t('detail.noEvents'))}</li>`;

    unitLayer.highlight = new Set(open ? activeAssignments(inc).map((a) => a.unit) : []);
    unitLayer.markDirty();
    renderCandidates();
    syncRoutes(inc, open);
  }
  renderDetailClocks(inc, open);
}

// The air rescue chain, step by step, each with its time and who reported it.
function renderRescue(inc) {
  const chain = rescueChain(inc, store.now());
  $('d-rescue-wrap').hidden = !chain;
  if (!chain) return;
  const target = chain.target === 'scene' ? t('detail.rescue.scene') : t('detail.rescue.lz', { name: chain.landingZone?.name || chain.landingZone?.id || '' });
  const doneSteps = chain.steps.filter((s) => s.ts != null);
  const lastDone = doneSteps.length ? doneSteps[doneSteps.length - 1].step : null;
  const html = `<dl class="kv"><dt>${esc(t('detail.rescue.target'))}</dt><dd>${esc(target)}</dd>
      ${chain.hospital ? `<dt>${esc(t('detail.hospital'))}</dt><dd>${esc(chain.hospital.name || chain.hospital.id)}</dd>` : ''}</dl>
    <ol class="chain">${chain.steps.map((s) => `<li class="${s.ts != null ? 'done' : 'todo'}${s.step === lastDone ? ' last' : ''}" data-step="${esc(s.step)}">
      <span class="c-step">${esc(word('ev', s.step))}</span><span class="c-time">${s.ts != null ? hhmmss(s.ts) : '—'}</span><span class="c-actor muted">${esc(s.actor || '')}</span>${stepClock(s.clock)}</li>`).join('')}</ol>`;
  setHTML($('d-rescue'), html);
}

function stepClock(c) {
  if (!c) return '';
  const val = c.done ? t(c.overdue ? 'box.doneLate' : 'box.done', { t: hhmmss(c.doneTs) }) : Number.isFinite(c.remainingMs)
    ? t(c.remainingMs < 0 ? 'box.over' : 'box.due', { d: fmtDuration(Math.abs(c.remainingMs)) }) : '';
  return `<span class="c-clock${c.overdue ? (c.done ? ' late-done' : ' late') : ''}" data-clock="${esc(c.clock)}">${esc(word('clock', c.clock))} ${esc(val)}</span>`;
}

// Why each unit was or was not chosen, as the server weighed them (roads: ETA by road).
function renderWeighed(inc) {
  const rows = [];
  for (const a of inc.assignments || []) {
    for (const c of Array.isArray(a.candidates) ? a.candidates : []) rows.push({ a, c });
  }
  $('d-weighed-wrap').hidden = rows.length === 0;
  $('d-weighed').tBodies[0].innerHTML = rows.map(({ a, c }) => {
    const u = store.units.get(c.unit);
    return `<tr class="why-${esc(c.why)}" data-unit="${esc(c.unit)}"><td>${kindTag(u?.kind)} ${esc(u?.callsign || c.unit)} <span class="muted">${esc(a.assignment)}</span></td>
      <td class="num">${fmtKm(c.distance_m)}</td><td class="num">${c.eta_s != null ? fmtDuration(c.eta_s * 1000) : '—'}</td>
      <td><span class="why why-${esc(c.why)}">${esc(word('why', c.why))}</span></td></tr>`;
  }).join('');
}

function renderClaims(inc) {
  const claims = Array.isArray(inc.claims) ? inc.claims : [];
  $('d-claims-wrap').hidden = claims.length === 0;
  $('d-claims').innerHTML = claims.map((c) => `<div class="claim">${esc(c.claim)} · ${esc(c.insurer)} · ${esc(c.state)}${c.paid_ts ? ` · ${hhmmss(c.paid_ts)} ¥${esc(c.amount)}` : c.deadline_ts ? ` · ${esc(t('box.due', { d: fmtDuration(c.deadline_ts - store.now()) }))}` : ''}</div>`).join('');
}

function renderDetailClocks(inc, open) {
  const now = store.now();
  const P = store.policy;
  const c = incidentClocks(inc, now, P);
  const box = (lbl, val, late, key = '', lateDone = false) => `<div class="clockbox${late ? ' late' : ''}${lateDone ? ' late-done' : ''}"${key ? ` data-clock="${esc(key)}"` : ''}><div class="lbl">${esc(lbl)}</div><div class="val">${val}</div></div>`;
  const parts = [box(t('box.since'), fmtDuration(c.sinceReport), false)];
  if (open) {
    if (c.toAssign) parts.push(box(t(c.toAssign.running ? 'box.unassignedFor' : 'box.timeToAssign'), fmtDuration(c.toAssign.ms), c.toAssign.running && c.toAssign.ms > P.assignTargetMs));
    if (c.ackWait) parts.push(box(t('box.ackWait', { unit: store.units.get(c.ackWait.unit)?.callsign || c.ackWait.unit }), fmtDuration(c.ackWait.ms), c.ackWait.overdue));
    if (c.remote) parts.push(box(t(c.remote.overdue ? 'box.liabilityOver' : 'box.liabilityDue'), fmtDuration(Math.abs(c.remote.remainingMs)), c.remote.overdue, 'liability'));
  }
  for (const k of c.clocks) {
    if (k.clock === 'liability' && c.remote && open) continue;
    const val = k.done ? esc(t(k.overdue ? 'box.doneLate' : 'box.done', { t: hhmmss(k.doneTs) })) : Number.isFinite(k.remainingMs)
      ? esc(t(k.remainingMs < 0 ? 'box.over' : 'box.due', { d: fmtDuration(Math.abs(k.remainingMs)) })) : '—';
    parts.push(box(word('clock', k.clock), val, k.overdue && !k.done, k.clock, k.overdue && k.done));
  }
  if (!open) parts.push(box(t('box.state'), esc(word('state', inc.state)), false));
  setHTML($('d-clocks'), parts.join(''));
  if (inc.rescue) renderRescue(inc);
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
    note.textContent = t('detail.candidates.none');
  } else {
    note.textContent = t('detail.notOpen');
  }
  note.hidden = list.length > 0;
  table.hidden = list.length === 0;
  reconcile(table.tBodies[0], list, (c) => c.unit.id,
    (c) => {
      const tr = document.createElement('tr');
      tr.innerHTML = `<td></td><td class="num"></td><td class="num"></td><td><button type="button" class="primary" data-unit="${esc(c.unit.id)}">${esc(t('detail.assign'))}</button></td>`;
      return tr;
    },
    (tr, c) => {
      const [nameTd, distTd, etaTd, actTd] = tr.children;
      setHTML(nameTd, `${kindTag(c.unit.kind)} ${esc(c.unit.callsign)} <span class="muted">${esc(c.unit.id)}</span>${c.unit.status !== 'available' ? ` ${stateTag('ustate', c.unit.status, t('busy.title'))}` : ''}`);
      setHTML(distTd, fmtKm(c.distanceM));
      setHTML(etaTd, fmtDuration(c.etaS * 1000));
      actTd.firstChild.disabled = !conn.live;
    });
}

// ---------------------------------------------------------------- routes

// Routes drawn for the selected incident: assignment id -> layer (null while asked).
const routeShown = new Map();

function syncRoutes(inc, open) {
  const want = new Set(open ? activeAssignments(inc).map((a) => a.assignment) : []);
  for (const [id, layer] of routeShown) {
    if (want.has(id)) continue;
    if (layer) routeLayer.removeLayer(layer);
    routeShown.delete(id);
  }
  for (const id of want) {
    if (routeShown.has(id)) continue;
    routeShown.set(id, null);
    fetchRoute(id);
  }
}

async function fetchRoute(id) {
  try {
    const r = await fetch(apiUrl(`/api/assignments/${encodeURIComponent(id)}/route`), { cache: 'no-store' });
    if (!r.ok || !routeShown.has(id)) return;
    const gj = await r.json();
    if (gj?.geometry?.type !== 'LineString' || !routeShown.has(id)) return;
    // Without a road (no roads loaded, a helicopter, no road between) the task line says it all.
    if (gj.properties?.road === false) return;
    const p = gj.properties || {};
    const layer = L.geoJSON(gj, { pane: 'routePane', style: () => ({ color: '#38bdf8', weight: 4, opacity: 0.8, className: 'route-line' }) });
    if (p.eta_s != null || p.distance_m != null) {
      layer.bindTooltip(esc(t('route.tip', { unit: store.units.get(p.unit)?.callsign || p.unit || '', km: p.distance_m != null ? (p.distance_m / 1000).toFixed(1) : '?', eta: p.eta_s != null ? fmtDuration(p.eta_s * 1000) : '?' })), { className: 'dark-tip', sticky: true });
    }
    routeLayer.addLayer(layer);
    routeShown.set(id, layer);
    debug.routes.set(id, gj.geometry.coordinates.length);
    if (debug.routes.size > 50) debug.routes.delete(debug.routes.keys().next().value);
  } catch {
    /* no route: the straight task line stays */
  }
}

// ---------------------------------------------------------------- vehicle history

async function showPlate(plate) {
  const box = $('d-plate');
  box.hidden = false;
  box.innerHTML = `<h3>${esc(t('plate.title', { plate }))}</h3><p class="note">…</p>`;
  try {
    const r = await fetch(apiUrl(`/api/vehicles/${encodeURIComponent(plate)}`), { cache: 'no-store' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const v = await r.json();
    const sightings = Array.isArray(v.sightings) ? v.sightings : [];
    const incidents = Array.isArray(v.incidents) ? v.incidents : [];
    box.innerHTML = `<h3>${esc(t('plate.title', { plate }))}</h3>
      <div class="muted">${esc(t('plate.sightings'))}</div>
      <ul class="plate-list">${sightings.length ? sightings.slice(0, 30).map((s) => `<li>${fmtDateTime(s.ts)} · ${esc(stationName(s.station))}${s.lat != null ? ` · ${Number(s.lat).toFixed(4)}, ${Number(s.lon).toFixed(4)}` : ''}</li>`).join('') : `<li class="muted">${esc(t('plate.none'))}</li>`}</ul>
      <div class="muted">${esc(t('plate.incidents'))}</div>
      <ul class="plate-list">${incidents.length ? incidents.slice(0, 30).map((i) => `<li><a href="#" data-open="${esc(i.id || i.incident)}">${esc(i.id || i.incident)}</a> ${fmtDateTime(i.reported_ts ?? i.ts)} ${i.state ? esc(word('state', i.state)) : ''}</li>`).join('') : `<li class="muted">${esc(t('plate.none'))}</li>`}</ul>`;
    box.onclick = (ev) => {
      const a = ev.target.closest('a[data-open]');
      if (!a) return;
      ev.preventDefault();
      openIncident(a.dataset.open, { pan: true });
    };
  } catch (e) {
    box.innerHTML = `<h3>${esc(t('plate.title', { plate }))}</h3><p class="note">${esc(e.message)}</p>`;
  }
}

// ---------------------------------------------------------------- history

let histFilter = null;
let histRows = [];
let histLastId = null;
let histEnd = false;
let histSeq = 0;

function readHistForm() {
  const ms = (v) => (v ? new Date(v).getTime() : NaN);
  const state = $('hist-state').value;
  return {
    from: ms($('hist-from').value),
    to: ms($('hist-to').value) + 999, // the whole of the last second shown
    district: $('hist-district').value,
    severity: $('hist-severity').value,
    state: state || 'all',
    plate: $('hist-plate').value.trim(),
    limit: Number($('hist-limit').value) || 50,
  };
}

async function fetchHistoryPage(f) {
  let r = await fetch(apiUrl(`/api/incidents?${historyQuery(f)}`), { cache: 'no-store' });
  if (r.status === 400 && f.state !== 'all' && f.state !== 'open') {
    // A server that knows only open|all: ask for all, keep the state filter here.
    r = await fetch(apiUrl(`/api/incidents?${historyQuery({ ...f, state: 'all' })}`), { cache: 'no-store' });
  }
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  const rows = await r.json();
  if (!Array.isArray(rows)) throw new Error('not a list');
  return { raw: rows, rows: rows.filter((inc) => matchesHistory(inc, f.state === 'open' ? { ...f, state: '' } : f)) };
}

// One page of matches. Filters the server does not apply yet are applied here, so a
// page may need several requests; at most 20, then the rest waits for "older".
async function searchHistory(more = false) {
  if (!more) {
    histFilter = readHistForm();
    histRows = [];
    histLastId = null;
    histEnd = false;
  }
  $('hist-csv').href = apiUrl(`/api/incidents?${historyQuery(histFilter, { csv: true })}`);
  $('hist-status').textContent = '…';
  const seq = ++histSeq;
  try {
    let found = 0;
    for (let i = 0; i < 20 && found < histFilter.limit && !histEnd; i++) {
      const { raw, rows } = await fetchHistoryPage({ ...histFilter, before: histLastId || undefined });
      if (seq !== histSeq) return;
      const seen = new Set(histRows.map((x) => x.id));
      const fresh = rows.filter((x) => !seen.has(x.id)).slice(0, histFilter.limit - found);
      histRows.push(...fresh);
      found += fresh.length;
      if (raw.length) histLastId = fresh.length && found >= histFilter.limit ? fresh[fresh.length - 1].id : raw[raw.length - 1].id;
      if (raw.length < histFilter.limit) histEnd = true;
    }
    $('hist-more').hidden = histEnd;
    $('hist-status').textContent = histRows.length ? `${t('hist.count', { n: histRows.length })}${histEnd ? ` · ${t('hist.end')}` : ''}` : t('hist.none');
    renderHistory();
  } catch (e) {
    $('hist-status').textContent = t('hist.failed', { err: e.message });
  }
}

function renderHistory() {
  reconcile($('hist-list'), histRows, (inc) => inc.id,
    (inc) => {
      const li = document.createElement('li');
      li.dataset.id = inc.id;
      li.innerHTML = '<span class="sevbar"></span><div class="q-main"></div><div class="q-state"></div><div class="q-clocks"></div>';
      return li;
    },
    (li, inc) => {
      li.className = `qrow hrow sev-${inc.severity}${inc.id === selectedId ? ' selected' : ''}`;
      const [, main, state, clocks] = li.children;
      setHTML(main, `${sevTag(inc.severity)}<span class="q-id">${esc(inc.id)}</span><span class="q-district">${esc(inc.district || '')}</span>`);
      setHTML(state, stateTag('state', inc.state));
      setHTML(clocks, `<span class="clk">${fmtDateTime(inc.reported_ts)}</span>${(inc.vehicles || []).map((v) => `<span class="clk">${esc(v.plate)}</span>`).join('')}`);
    });
}

$('hist-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  searchHistory(false);
});
$('hist-more').addEventListener('click', () => searchHistory(true));

// The export: the server's CSV when it makes one; otherwise every match it returns, as CSV
// made here (filtered as the search is).
$('hist-csv').addEventListener('click', async (ev) => {
  ev.preventDefault();
  const f = histFilter || readHistForm();
  const href = apiUrl(`/api/incidents?${historyQuery(f, { csv: true })}`);
  try {
    let r = await fetch(href, { cache: 'no-store' });
    if (r.status === 400 && f.state !== 'all' && f.state !== 'open') {
      r = await fetch(apiUrl(`/api/incidents?${historyQuery({ ...f, state: 'all' }, { csv: true })}`), { cache: 'no-store' });
    }
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    let text;
    let source = 'server';
    if (/text\/csv/.test(r.headers.get('content-type') || '')) {
      text = await r.text();
    } else {
      const rows = (await r.json()).filter((inc) => matchesHistory(inc, f.state === 'open' ? { ...f, state: '' } : f));
      text = incidentsToCsv(rows, fmtDateTime);
      source = 'page';
    }
    debug.lastCsv = { source, length: text.length };
    const url = URL.createObjectURL(new Blob([text], { type: 'text/csv;charset=utf-8' }));
    const a = document.createElement('a');
    const now = new Date(store.now());
    a.href = url;
    a.download = `incidents-${now.getFullYear()}${pad2(now.getMonth() + 1)}${pad2(now.getDate())}-${pad2(now.getHours())}${pad2(now.getMinutes())}.csv`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (e) {
    toast(t('hist.failed', { err: e.message }), 'err');
  }
});
$('hist-list').addEventListener('click', (ev) => {
  const row = ev.target.closest('.hrow');
  if (row) openIncident(row.dataset.id, { pan: true });
});

// ---------------------------------------------------------------- track replay

const replay = { span: null, tracks: new Map(), markers: new Map(), playing: false, timer: 0, t: 0 };

async function startReplay(inc) {
  stopReplay();
  replayLayer.clearLayers();
  replay.tracks.clear();
  replay.markers.clear();
  const span = replaySpan(inc, store.now());
  if (!span) return;
  replay.span = span;
  const units = [...new Set((inc.assignments || []).map((a) => a.unit))];
  const bounds = [];
  let i = 0;
  for (const u of units) {
    try {
      const r = await fetch(apiUrl(`/api/units/${encodeURIComponent(u)}/track?since=${span.from}&until=${span.to}`), { cache: 'no-store' });
      if (!r.ok) continue;
      const gj = await r.json();
      const coords = gj?.geometry?.coordinates || [];
      replay.tracks.set(u, gj);
      if (!coords.length) continue;
      const colour = REPLAY_COLOURS[i++ % REPLAY_COLOURS.length];
      const latlngs = coords.map((c) => [c[1], c[0]]);
      bounds.push(...latlngs);
      replayLayer.addLayer(L.polyline(latlngs, { color: colour, weight: 3, opacity: 0.75, dashArray: '6 4', interactive: false }));
      const m = L.circleMarker(latlngs[0], { radius: 7, color: '#0b1020', weight: 2, fillColor: colour, fillOpacity: 1, className: 'replay-marker' })
        .bindTooltip(esc(store.units.get(u)?.callsign || u), { permanent: true, direction: 'right', className: 'dark-tip replay-tip' });
      replayLayer.addLayer(m);
      replay.markers.set(u, m);
    } catch {
      /* one unit without a track: the others still replay */
    }
  }
  if (inc.lat != null) bounds.push([inc.lat, inc.lon]);
  $('replay-bar').hidden = false;
  $('replay-slider').value = '0';
  setReplayTime(span.from);
  const pts = [...replay.tracks.values()].reduce((n, gj) => n + (gj?.geometry?.coordinates?.length || 0), 0);
  if (!pts) toast(t('replay.none'));
  if (bounds.length > 1) map.fitBounds(L.latLngBounds(bounds).pad(0.2), { maxZoom: 15 });
}

function setReplayTime(ts) {
  replay.t = ts;
  for (const [u, m] of replay.markers) {
    const track = replay.tracks.get(u);
    const p = trackAt(track, ts);
    // Before its first fix: shown faded where it was first seen.
    const first = track?.geometry?.coordinates?.[0];
    if (p) m.setLatLng([p.lat, p.lon]);
    else if (first) m.setLatLng([first[1], first[0]]);
    m.setStyle({ opacity: p ? 1 : 0.3, fillOpacity: p ? 1 : 0.3 });
  }
  $('replay-time').textContent = fmtDateTime(ts);
}

function stopReplay() {
  clearInterval(replay.timer);
  replay.timer = 0;
  replay.playing = false;
  $('replay-play').textContent = t('replay.play');
}

$('replay-slider').addEventListener('input', () => {
  if (!replay.span) return;
  const f = Number($('replay-slider').value) / 1000;
  setReplayTime(replay.span.from + f * (replay.span.to - replay.span.from));
});
$('replay-play').addEventListener('click', () => {
  if (!replay.span) return;
  if (replay.playing) {
    stopReplay();
    return;
  }
  replay.playing = true;
  $('replay-play').textContent = t('replay.pause');
  // The whole span in about 30 s of screen time.
  replay.timer = setInterval(() => {
    let v = Number($('replay-slider').value) + 1000 / 300;
    if (v >= 1000) {
      v = 1000;
      stopReplay();
    }
    $('replay-slider').value = String(v);
    setReplayTime(replay.span.from + (v / 1000) * (replay.span.to - replay.span.from));
  }, 100);
});
$('replay-clear').addEventListener('click', () => {
  stopReplay();
  replayLayer.clearLayers();
  replay.tracks.clear();
  replay.markers.clear();
  replay.span = null;
  $('replay-bar').hidden = true;
});

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
    <h4>${esc(t('rf.title'))}</h4>
    <div class="coords">${latlng.lat.toFixed(5)}, ${latlng.lng.toFixed(5)}</div>
    <div class="form-row"><label for="rf-severity">${esc(t('rf.severity'))}</label>
      <select id="rf-severity" name="severity"><option value="minor">${esc(t('sev.minor'))}</option><option value="injury" selected>${esc(t('sev.injury'))}</option><option value="critical">${esc(t('sev.critical'))}</option></select></div>
    <div class="form-row"><label for="rf-injured">${esc(t('rf.injured'))}</label><input type="number" id="rf-injured" name="injured" min="0" max="99" value="0"></div>
    <div class="checks"><label><input type="checkbox" id="rf-drivable" name="drivable"> ${esc(t('rf.drivable'))}</label>
      <label><input type="checkbox" id="rf-agree" name="parties_agree"> ${esc(t('rf.agree'))}</label></div>
    <div class="form-row"><label for="rf-plate">${esc(t('rf.plate'))}</label><input type="text" id="rf-plate" name="plate" placeholder="渝A12345"></div>
    <div class="form-row"><label for="rf-insurer">${esc(t('rf.insurer'))}</label><input type="text" id="rf-insurer" name="insurer" placeholder="PICC"></div>
    <div class="form-row"><label for="rf-note">${esc(t('rf.note'))}</label><input type="text" id="rf-note" name="note"></div>
    <div class="actions"><button type="submit" class="primary" id="rf-submit">${esc(t('rf.submit'))}</button><button type="button" id="rf-cancel">${esc(t('rf.cancel'))}</button></div>
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
    // Offline, the report waits here and goes out as soon as a server answers (its id
    // makes a second sending the same incident).
    const sent = conn.send(report);
    const marker = L.circleMarker(latlng, { renderer: incidentRenderer, radius: 9, color: '#f8fafc', weight: 2, dashArray: '3 3', fillOpacity: 0, className: 'pending-marker' })
      .bindTooltip(esc(t('rf.pending', { id: report.id })), { className: 'dark-tip' });
    pendingLayer.addLayer(marker);
    pendingReports.set(report.id, { marker, report });
    debug.lastReportId = report.id;
    map.closePopup();
    toast(t(sent ? 'toast.reportSent' : 'toast.reportKept', { id: report.id }), sent ? '' : 'err');
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
    ${kindTag(u.kind)} ${stateTag('ustate', u.status)}<br>
    <span class="muted">${esc(t('unit.lastFix', { age }))}</span>${u.incident ? `<br>${esc(t('unit.on'))} <a href="#" data-act="open">${esc(u.incident)}</a>` : ''}
    <div class="actions">${inc && u.status === 'available' ? `<button type="button" class="primary" data-act="assign">${esc(t('unit.assignTo', { incident: inc.id }))}</button>` : ''}
      <button type="button" data-act="report">${esc(t('unit.reportHere'))}</button></div>`;
  div.querySelector('[data-act=assign]')?.addEventListener('click', () => {
    sendCommand({ type: 'assign', incident: inc.id, unit: u.id }, t('toast.assignSent', { unit: u.callsign, incident: inc.id }));
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

// A unit's callsign on hover, for the units whose label did not fit.
const hoverTip = L.tooltip({ className: 'dark-tip unit-hover', direction: 'right', offset: [10, 0] });
let hoverFrame = 0;
let hoverPoint = null;
map.on('mousemove', (ev) => {
  hoverPoint = ev.containerPoint;
  if (hoverFrame) return;
  hoverFrame = requestAnimationFrame(() => {
    hoverFrame = 0;
    const u = hoverPoint && unitLayer.hit(hoverPoint);
    if (u) {
      hoverTip.setLatLng([u.lat, u.lon]).setContent(`<b>${esc(u.callsign)}</b> ${esc(word('kind', u.kind))} · ${esc(word('ustate', u.status))}`);
      if (!map.hasLayer(hoverTip)) hoverTip.addTo(map);
      debug.hovered = u.id;
    } else if (map.hasLayer(hoverTip)) {
      hoverTip.remove();
      debug.hovered = null;
    }
  });
});
map.on('mouseout', () => { if (map.hasLayer(hoverTip)) hoverTip.remove(); });

// ---------------------------------------------------------------- connection

function sendCommand(msg, okText) {
  if (!conn.send(msg)) {
    toast(t('toast.notsent'), 'err');
    return false;
  }
  if (okText) toast(okText);
  return true;
}

function onMessage(msg) {
  if (msg.type === 'hazard') {
    const isNew = !store.hazards.has(String(msg.hazard));
    store.apply(msg);
    if (isNew && msg.state !== 'cleared') {
      raiseAlert(`hazard:${msg.hazard}`, { kind: 'hazard', hazard: String(msg.hazard), ts: msg.ts, textKey: 'alert.hazard', vars: { kind: word('hazardKind', msg.kind), station: stationName(msg.station) } });
    } else if (msg.state === 'cleared') {
      alerts.resolve(`hazard:${msg.hazard}`);
      scheduleAlerts();
    }
    return;
  }
  if (store.apply(msg)) return;
  if (msg.type === 'accepted') {
    if (settlePending(msg.id)) {
      toast(t('toast.reportAccepted', { incident: msg.incident }), 'ok');
      if (store.incidents.has(msg.incident)) selectIncident(msg.incident);
      else awaitingSelect.add(msg.incident);
    }
    debug.accepted.set(msg.id, msg.incident);
    if (debug.accepted.size > 200) debug.accepted.delete(debug.accepted.keys().next().value);
  } else if (msg.type === 'error') {
    if (msg.ref) settlePending(msg.ref);
    debug.errors.push(msg);
    if (debug.errors.length > 50) debug.errors.shift();
    toast(`${t('toast.error', { code: msg.code || 'error', message: msg.message || '' })}${msg.ref ? ` (${msg.ref})` : ''}`, 'err');
  }
}

let connDetail = {};
let lastLive = 0;
let everLive = false;
function onState(state, detail) {
  connDetail = detail;
  const el = $('conn');
  el.className = `conn conn-${state}`;
  // Everything shown while offline is as old as the last moment the socket was live.
  if (state === 'live') lastLive = 0;
  else if (!lastLive && store.snapshots) lastLive = store.now();
  document.body.classList.toggle('offline', state !== 'live' && store.snapshots > 0);
  $('offline-banner').textContent = lastLive ? t('offline.banner', { time: hhmmss(lastLive) }) : '';
  if (detail.host) serverBase = detail.host === location.host ? '' : `${location.protocol}//${detail.host}`;
  renderConnText();
  if (state === 'live') {
    everLive = true;
    if (alerts.resolve('conn')) scheduleAlerts();
    toast(t('toast.connected'), 'ok');
    for (const { report } of pendingReports.values()) conn.send(report);
    if (selectedId && !store.incidents.has(selectedId)) refreshDetail(true);
  } else if (everLive && (state === 'reconnecting' || state === 'connecting' || state === 'standby')) {
    raiseAlert('conn', { kind: 'conn', textKey: 'alert.connLost', vars: {}, again: true });
  }
  renderCandidates();
}

function renderConnText() {
  const s = conn.state;
  const secs = () => Math.max(0, Math.ceil((connDetail.until - Date.now()) / 1000));
  let text = s;
  if (s === 'live') text = t('conn.live');
  else if (s === 'connecting') text = connDetail.attempt ? t('conn.connecting.try', { n: connDetail.attempt + 1 }) : t('conn.connecting');
  else if (s === 'syncing') text = t('conn.syncing');
  else if (s === 'reconnecting') text = t('conn.reconnecting', { s: secs() });
  else if (s === 'refused') text = t('conn.refused', { s: secs() });
  else if (s === 'standby') text = t('conn.standby');
  else if (s === 'notoken') text = t('conn.notoken');
  else if (s === 'closed') text = t('conn.closed');
  $('conn-text').textContent = text;
  $('conn').title = conn.host ? t('conn.server', { host: conn.host }) : '';
}

// Several servers (?servers=host:port,...): the connection moves to whichever answers;
// a standby refuses (503) until it takes over.
const servers = parseServers(params.get('servers'), location.host);
const wsScheme = location.protocol === 'https:' ? 'wss' : 'ws';
const conn = new Connection({
  servers,
  url: (host) => `${wsScheme}://${host}/ws/console?token=${encodeURIComponent(token)}&batch=1`,
  probeUrl: (host) => `${location.protocol}//${host}/api/units?token=${encodeURIComponent(token)}`,
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
  $('clock').textContent = hhmmss(store.now());
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

// The language switch: everything is redrawn in the other language, nothing reloads.
function switchLang(next, remember) {
  setLang(next);
  if (remember) {
    langChosen = true;
    try { localStorage.setItem(LANG_KEY, next); } catch { /* private mode: this page only */ }
  }
  applyStatic();
  buildLayerControl();
  for (const inc of store.incidents.values()) syncIncidentMarker(inc);
  rebuildHazards();
  renderStats();
  renderQueue();
  renderAlerts();
  renderHistory();
  renderConnText();
  if (selectedId) {
    buildDetail();
    refreshDetail(true);
  }
}
$('lang-switch').addEventListener('click', () => switchLang(getLang() === 'en' ? 'zh-CN' : 'en', true));

// ---------------------------------------------------------------- read-only hook for tests
// (what it keeps is bounded: the page may run for weeks)

const debug = {
  districts: 0,
  places: 0,
  roads: 0,
  tiles: null,
  accepted: new Map(),
  lastReportId: null,
  routes: new Map(),
  errors: [],
  lastCsv: null,
  hovered: null,
  districtGeo: null,
};
window.__console = Object.freeze({
  connection: () => conn.state,
  server: () => conn.host,
  snapshots: () => store.snapshots,
  unitCount: () => store.units.size,
  unitsDrawn: () => unitLayer.drawn,
  unitPosition: (id) => unitLayer.drawnAt(id),
  unitPixel: (id) => unitLayer.pixelAt(id),
  unitStatus: (id) => store.units.get(id)?.status ?? null,
  labels: () => unitLayer.labelBoxes(),
  // The task lines of the last frame: which unit, to where.
  taskLines: () => (unitLayer.lines || []).map((l) => ({ ...l })),
  hovered: () => debug.hovered,
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
  historyIds: () => [...$('hist-list').querySelectorAll('.hrow')].map((r) => r.dataset.id),
  alerts: () => alerts.active().map(({ key, kind, incident, resolved }) => ({ key, kind, incident: incident ?? null, resolved })),
  hazards: () => [...store.hazards.keys()],
  policy: () => ({ ...store.policy }),
  replayPoints: () => Object.fromEntries([...replay.tracks].map(([u, gj]) => [u, gj?.geometry?.coordinates?.length || 0])),
  replayAt: (id) => {
    const m = replay.markers.get(id);
    return m ? { lat: m.getLatLng().lat, lon: m.getLatLng().lng } : null;
  },
  routes: () => Object.fromEntries(debug.routes),
  acceptedIncident: (reportId) => debug.accepted.get(reportId) ?? null,
  lastReportId: () => debug.lastReportId,
  pendingReports: () => [...pendingReports.keys()],
  lastCsv: () => debug.lastCsv,
  errors: () => debug.errors.map((e) => ({ code: e.code, ref: e.ref ?? null })),
  districtCount: () => debug.districts,
  placeCount: () => debug.places,
  roadCount: () => debug.roads,
  tiles: () => debug.tiles,
  lang: () => getLang(),
  containerPoint: (lat, lon) => {
    const p = map.latLngToContainerPoint([lat, lon]);
    return { x: p.x, y: p.y };
  },
  setView: (lat, lon, zoom) => map.setView([lat, lon], zoom, { animate: false }),
  selectedIncident: () => selectedId,
  // Cost of keeping up: last canvas redraw, frames drawn, messages and time spent on them.
  stats: () => ({ drawMs: unitLayer.drawMs, frames: unitLayer.frames, labelled: unitLayer.labelled, messages: conn.messages, handledMs: conn.handledMs }),
});

// ---------------------------------------------------------------- start

renderStats();
renderQueue();
renderAlerts();
loadDistricts();
loadPlaces();
loadRoads();
if (!token) {
  $('notoken').hidden = false;
  conn.state = 'notoken';
  onState('notoken', {});
} else {
  conn.start();
}
