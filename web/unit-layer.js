// Units and assignment lines on one canvas. Thousands of units move every second, so
// there is no object per unit on the map: each redraw walks the store once, at most once
// per animation frame, and each unit caches its projected pixel position until it moves
// or the zoom changes.
import * as L from './node_modules/leaflet/dist/leaflet-src.esm.js';
import { activeAssignments, taskTarget } from './model.js';
import { placeLabels } from './labels.js';

export const STATUS_COLOURS = {
  available: '#34d399',
  assigned: '#fbbf24',
  en_route: '#60a5fa',
  on_scene: '#c084fc',
  off_duty: '#6b7280',
  stale: '#9ca3af',
};

const LINE_COLOURS = { assigned: '#fbbf24', en_route: '#60a5fa', on_scene: '#c084fc' };
const PADDING = 0.15; // of the view on each side, so a short pan shows no empty edge

export const UnitLayer = L.Layer.extend({
  // Labels are tried at zoom >= labelZoom or with at most labelMax units in view, and only
  // where they collide with nothing (labels.js); the others show on hover.
  // Placing costs ~0.2 ms for 300 units in view, ~0.7 ms for 1,000 and ~1.2 ms for 1,500
  // (docs/performance.md), several times that before the JIT warms up; so it is redone at
  // most every labelEveryMs (and at once on a zoom or pan); between, each label keeps its
  // side and follows its unit.
  options: { pane: 'unitPane', labelZoom: 12, labelMax: 600, labelTryMax: 1500, labelEveryMs: 300 },

  initialize(store, options) {
    L.setOptions(this, options);
    this.store = store;
    this.frame = 0;
    this.drawn = 0;
    this.frames = 0;
    this.highlight = new Set();
    this.showLines = true;
    this.labels = [];
    this.labelled = 0;
  },

  onAdd(map) {
    this.canvas = L.DomUtil.create('canvas', 'unit-canvas leaflet-zoom-animated');
    this.ctx = this.canvas.getContext('2d');
    map.getPane(this.options.pane).appendChild(this.canvas);
    map.on('moveend zoomend resize viewreset', this.reset, this);
    map.on('zoomanim', this.animateZoom, this);
    this.reset();
  },

  onRemove(map) {
    map.off('moveend zoomend resize viewreset', this.reset, this);
    map.off('zoomanim', this.animateZoom, this);
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    L.DomUtil.remove(this.canvas);
    this.canvas = null;
  },

  // Asks for a redraw on the next animation frame; many calls in one frame cost one draw.
  markDirty() {
    if (this.frame || !this.canvas) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  },

  reset() {
    const map = this._map;
    if (!map || !this.canvas) return;
    const size = map.getSize();
    const min = map.containerPointToLayerPoint(size.multiplyBy(-PADDING)).round();
    const full = size.multiplyBy(1 + 2 * PADDING).round();
    this.min = min;
    this.center = map.getCenter();
    this.zoom = map.getZoom();
    this.pixelOrigin = map.getPixelOrigin();
    const dpr = window.devicePixelRatio || 1;
    this.dpr = dpr;
    this.canvas.width = Math.round(full.x * dpr);
    this.canvas.height = Math.round(full.y * dpr);
    this.canvas.style.width = `${full.x}px`;
    this.canvas.style.height = `${full.y}px`;
    this.size = full;
    L.DomUtil.setPosition(this.canvas, min);
    this.labelsAt = 0; // the view moved: place the labels again
    this.draw();
  },

  // The same transform Leaflet's own renderers use while a zoom animates.
  animateZoom(ev) {
    const map = this._map;
    const scale = map.getZoomScale(ev.zoom, this.zoom);
    const viewHalf = map.getSize().multiplyBy(0.5 + PADDING);
    const centerPoint = map.project(this.center, ev.zoom);
    const topLeft = viewHalf.multiplyBy(-scale).add(centerPoint).subtract(map._getNewPixelOrigin(ev.center, ev.zoom));
    L.DomUtil.setTransform(this.canvas, topLeft, scale);
  },

  // Canvas coordinates of a unit (cached per zoom level).
  place(u) {
    if (u._pz !== this.zoom) {
      const p = this._map.project([u.lat, u.lon], this.zoom);
      u._px = p.x;
      u._py = p.y;
      u._pz = this.zoom;
    }
    return [u._px - this.pixelOrigin.x - this.min.x, u._py - this.pixelOrigin.y - this.min.y];
  },

  draw() {
    if (!this.canvas || !this._map) return;
    const started = performance.now();
    const { ctx, dpr } = this;
    const w = this.size.x;
    const h = this.size.y;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    this.frames += 1;

    if (this.showLines) this.drawLines(ctx);

    // Bucket by status so each colour is one path and one fill.
    const buckets = new Map();
    let drawn = 0;
    const frame = this.frames;
    for (const u of this.store.units.values()) {
      if (u.lat == null || u.lon == null) continue;
      const [x, y] = this.place(u);
      if (x < -10 || y < -10 || x > w + 10 || y > h + 10) continue;
      u._cx = x;
      u._cy = y;
      u._frame = frame;
      let b = buckets.get(u.status);
      if (!b) buckets.set(u.status, (b = []));
      b.push(u);
      drawn += 1;
    }
    this.drawn = drawn;
    this.lastFrame = frame;

    const zoomed = this.zoom;
    // Smaller marks when thousands share the view, so a crowd still reads as points.
    const dense = drawn > 3000;
    const r = zoomed >= 14 ? 5 : dense ? (zoomed >= 12 ? 3 : 2) : zoomed >= 11 ? 4 : 3;
    ctx.lineWidth = 1;
    ctx.strokeStyle = 'rgba(6, 10, 20, 0.9)';
    for (const [status, list] of buckets) {
      ctx.fillStyle = STATUS_COLOURS[status] || '#e5e7eb';
      ctx.beginPath();
      for (const u of list) shape(ctx, u.kind, u._cx, u._cy, r);
      ctx.fill();
      if (drawn < 2000) ctx.stroke();
    }

    // Helicopters carry a letter so they read as aircraft at any zoom.
    ctx.font = `bold ${r + 5}px system-ui, sans-serif`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillStyle = '#0b1020';
    for (const list of buckets.values()) {
      for (const u of list) if (u.kind === 'heli') ctx.fillText('H', u._cx, u._cy + 1);
    }

    if (this.highlight.size) {
      ctx.strokeStyle = '#f8fafc';
      ctx.lineWidth = 2;
      for (const id of this.highlight) {
        const u = this.store.units.get(id);
        if (!u || u._frame !== frame) continue;
        ctx.beginPath();
        ctx.arc(u._cx, u._cy, r * 2.6 + 2, 0, Math.PI * 2);
        ctx.stroke();
      }
    }

    const placeNow = this.labelsZoom !== zoomed || performance.now() - (this.labelsAt || 0) > this.options.labelEveryMs;
    const tryLabels = (zoomed >= this.options.labelZoom || drawn <= this.options.labelMax) && drawn <= this.options.labelTryMax;
    ctx.font = '12px "Noto Sans CJK SC", "Noto Sans SC", "Microsoft YaHei", system-ui, sans-serif';
    if (!tryLabels) {
      this.labels = [];
    } else if (placeNow) {
      const items = [];
      for (const list of buckets.values()) {
        for (const u of list) {
          const label = u.callsign || u.id;
          if (u._lt !== label) {
            u._lt = label;
            u._lw = Math.ceil(ctx.measureText(label).width);
          }
          const rank = (this.highlight.has(u.id) ? 0 : 4) + (u.kind === 'heli' ? 0 : 2) + (u.status === 'available' || u.status === 'stale' || u.status === 'off_duty' ? 1 : 0);
          items.push({ x: u._cx, y: u._cy, w: u._lw, h: 14, r: u.kind === 'heli' ? r + 4 : r, u, rank });
        }
      }
      items.sort((a, b) => a.rank - b.rank);
      this.labels = placeLabels(items, { bounds: { w, h } });
      this.labelsAt = performance.now();
      this.labelsZoom = zoomed;
    } else {
      // Between placements: the same labels on the same sides of their units.
      this.labels = this.labels.filter((l) => l.item.u._frame === frame).map((l) => {
        const dx = l.x - l.item.x;
        const dy = l.y - l.item.y;
        const item = { ...l.item, x: l.item.u._cx, y: l.item.u._cy };
        return { ...l, item, x: item.x + dx, y: item.y + dy };
      });
    }
    if (this.labels.length) {
      ctx.textAlign = 'left';
      ctx.textBaseline = 'middle';
      ctx.lineWidth = 3;
      ctx.strokeStyle = 'rgba(6, 10, 20, 0.85)';
      ctx.fillStyle = '#e2e8f0';
      for (const l of this.labels) {
        ctx.strokeText(l.item.u._lt, l.x, l.y + l.h / 2);
        ctx.fillText(l.item.u._lt, l.x, l.y + l.h / 2);
      }
    }
    this.labelled = this.labels.length;
    this.drawMs = performance.now() - started;
  },

  drawLines(ctx) {
    const units = this.store.units;
    this.lines = [];
    ctx.lineWidth = 2;
    for (const inc of this.store.incidents.values()) {
      if (inc.lat == null) continue;
      const scene = this.placePoint(inc);
      for (const a of activeAssignments(inc)) {
        const u = units.get(a.unit);
        if (!u || u.lat == null) continue;
        const [x, y] = this.place(u);
        // A helicopter bound for a landing zone, and the team securing it, go there.
        const target = taskTarget(inc, a);
        const ip = target === inc ? scene : this.placePoint(target);
        this.lines.push({ unit: u.id, incident: inc.id, task: a.task ?? null, lat: target.lat, lon: target.lon });
        ctx.strokeStyle = LINE_COLOURS[a.state] || '#e5e7eb';
        ctx.setLineDash(a.state === 'assigned' ? [6, 5] : []);
        ctx.globalAlpha = 0.85;
        ctx.beginPath();
        ctx.moveTo(x, y);
        ctx.lineTo(ip[0], ip[1]);
        ctx.stroke();
      }
    }
    ctx.setLineDash([]);
    ctx.globalAlpha = 1;
  },

  placePoint(obj) {
    const p = this._map.project([obj.lat, obj.lon], this.zoom);
    return [p.x - this.pixelOrigin.x - this.min.x, p.y - this.pixelOrigin.y - this.min.y];
  },

  // The labels drawn in the last frame, as container-pixel boxes (for tests).
  labelBoxes() {
    if (!this._map) return [];
    return this.labels.map((l) => {
      const p = this._map.layerPointToContainerPoint([l.x + this.min.x, l.y + this.min.y]);
      return { id: l.item.u.id, text: l.item.u._lt, x: p.x, y: p.y, w: l.w, h: l.h };
    });
  },

  // Where a unit was last drawn, in map container pixels; null when it was not drawn.
  drawnAt(id) {
    const u = this.store.units.get(id);
    if (!u || u._frame !== this.lastFrame || !this._map) return null;
    const cp = this._map.layerPointToContainerPoint([u._cx + this.min.x, u._cy + this.min.y]);
    return { x: cp.x, y: cp.y, lat: u.lat, lon: u.lon };
  },

  // The canvas pixel under a unit, to prove something is painted there.
  pixelAt(id) {
    const u = this.store.units.get(id);
    if (!u || u._frame !== this.lastFrame) return null;
    const d = this.ctx.getImageData(Math.round(u._cx * this.dpr), Math.round(u._cy * this.dpr), 1, 1).data;
    return [d[0], d[1], d[2], d[3]];
  },

  // The nearest drawn unit within `radius` container pixels of a point.
  hit(containerPoint, radius = 9) {
    if (!this._map) return null;
    const lp = this._map.containerPointToLayerPoint(containerPoint);
    const x = lp.x - this.min.x;
    const y = lp.y - this.min.y;
    let best = null;
    let bestD = radius * radius;
    for (const u of this.store.units.values()) {
      if (u._frame !== this.lastFrame) continue;
      const d = (u._cx - x) ** 2 + (u._cy - y) ** 2;
      if (d <= bestD) {
        bestD = d;
        best = u;
      }
    }
    return best;
  },
});

// moto: a disc; car: a square; heli: a larger diamond with a letter.
function shape(ctx, kind, x, y, r) {
  if (kind === 'car') {
    ctx.moveTo(x - r, y - r);
    ctx.rect(x - r, y - r, 2 * r, 2 * r);
  } else if (kind === 'heli') {
    const R = r + 4;
    ctx.moveTo(x, y - R);
    ctx.lineTo(x + R, y);
    ctx.lineTo(x, y + R);
    ctx.lineTo(x - R, y);
    ctx.closePath();
  } else {
    ctx.moveTo(x + r, y);
    ctx.arc(x, y, r, 0, Math.PI * 2);
  }
}
