// Labels that never collide: each label tries four places around its point (right, left,
// above, below) and is kept only where its box overlaps no box already kept; the rest are
// left for the hover tooltip. Items come most important first. Boxes are bucketed in a
// grid so a few thousand labels cost a few thousand cheap checks. No DOM: node tests it.

// items: [{x, y, w, h, r}] (point in pixels, label size, the mark's radius).
// Returns [{item, x, y, w, h}]: the box of each label kept (x, y its top-left corner).
export function placeLabels(items, { cell = 64, pad = 2, bounds = null, avoidMarks = true, max = Infinity } = {}) {
  const grid = new Map();
  const kept = [];
  const keyOf = (cx, cy) => cx * 73856093 ^ cy * 19349663;
  const cells = (b, fn) => {
    const x0 = Math.floor(b.x / cell);
    const x1 = Math.floor((b.x + b.w) / cell);
    const y0 = Math.floor(b.y / cell);
    const y1 = Math.floor((b.y + b.h) / cell);
    for (let cx = x0; cx <= x1; cx++) {
      for (let cy = y0; cy <= y1; cy++) if (fn(keyOf(cx, cy)) === false) return false;
    }
    return true;
  };
  const free = (b) => cells(b, (k) => {
    const list = grid.get(k);
    if (!list) return true;
    for (const o of list) {
      if (b.x < o.x + o.w + pad && o.x < b.x + b.w + pad && b.y < o.y + o.h + pad && o.y < b.y + b.h + pad) return false;
    }
    return true;
  });
  const take = (b) => cells(b, (k) => {
    let list = grid.get(k);
    if (!list) grid.set(k, (list = []));
    list.push(b);
  });
  // The marks themselves are obstacles too, so no label covers another unit's dot.
  if (avoidMarks) {
    for (const it of items) {
      const r = it.r || 0;
      take({ x: it.x - r, y: it.y - r, w: 2 * r, h: 2 * r, mark: true });
    }
  }
  for (const it of items) {
    if (kept.length >= max) break;
    const r = it.r || 0;
    const gap = r + 3;
    const tries = [
      { x: it.x + gap, y: it.y - it.h / 2 },
      { x: it.x - gap - it.w, y: it.y - it.h / 2 },
      { x: it.x - it.w / 2, y: it.y - gap - it.h },
      { x: it.x - it.w / 2, y: it.y + gap },
    ];
    for (const p of tries) {
      const b = { x: p.x, y: p.y, w: it.w, h: it.h };
      if (bounds && (b.x < 0 || b.y < 0 || b.x + b.w > bounds.w || b.y + b.h > bounds.h)) continue;
      // A label may touch its own mark's box but not any other.
      if (!freeExceptOwn(b, it, free, grid, cell, pad, keyOf)) continue;
      take(b);
      kept.push({ item: it, ...b });
      break;
    }
  }
  return kept;
}

function freeExceptOwn(b, it, free, grid, cell, pad, keyOf) {
  if (free(b)) return true;
  // Only its own mark in the way? Check every overlapping box.
  const r = it.r || 0;
  const x0 = Math.floor(b.x / cell);
  const x1 = Math.floor((b.x + b.w) / cell);
  const y0 = Math.floor(b.y / cell);
  const y1 = Math.floor((b.y + b.h) / cell);
  for (let cx = x0; cx <= x1; cx++) {
    for (let cy = y0; cy <= y1; cy++) {
      for (const o of grid.get(keyOf(cx, cy)) || []) {
        if (!(b.x < o.x + o.w + pad && o.x < b.x + b.w + pad && b.y < o.y + o.h + pad && o.y < b.y + b.h + pad)) continue;
        const own = o.mark && o.x === it.x - r && o.y === it.y - r && o.w === 2 * r;
        if (!own) return false;
      }
    }
  }
  return true;
}

// Whether two kept boxes overlap (for tests and for callers that add their own boxes).
export function overlaps(a, b) {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}
