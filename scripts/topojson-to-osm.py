#!/usr/bin/env python3
"""Convert the Chongqing core-city road network (TopoJSON, WGS84) to OpenStreetMap XML.

The data has no licence: read it from ../shared/data/chongqing/roads/ and write the .osm
into a build directory, never into the repository.

Two inputs are understood (chosen by what the file holds):

* cq_core_link_node.topojson, objects "link" and "node" (a routable link/node graph):
  each link runs FROMNODENO -> TONODENO, DXD 1 = one way in that direction (0 = both),
  TJL 1..5 = road level (1 expressway .. 5 branch road), FS = free-flow speed km/h
  (written as maxspeed). Links meet at their node numbers.
* cq_core_roads.topojson, object "路网": roads with ROADLEVEL 快速路/主干路/次干路/支路/匝道
  and no direction (written as two-way); roads meet where they share a vertex.

Usage: topojson-to-osm.py INPUT.topojson OUTPUT.osm
"""
import json
import sys
from xml.sax.saxutils import quoteattr

ROADLEVEL = {"快速路": "trunk", "主干路": "primary", "次干路": "secondary", "支路": "residential", "匝道": "trunk_link"}
TJL = {1: "trunk", 2: "primary", 3: "secondary", 4: "tertiary", 5: "residential"}


def decode_arcs(topo):
    """Absolute lon/lat of every arc (quantized arcs are delta-encoded)."""
    tr = topo.get("transform")
    arcs = []
    for arc in topo["arcs"]:
        pts, x, y = [], 0, 0
        for p in arc:
            if tr:
                x, y = x + p[0], y + p[1]
                pts.append((x * tr["scale"][0] + tr["translate"][0], y * tr["scale"][1] + tr["translate"][1]))
            else:
                pts.append((p[0], p[1]))
        arcs.append(pts)
    return arcs


def point(topo, coords):
    tr = topo.get("transform")
    if not tr:
        return (coords[0], coords[1])
    return (coords[0] * tr["scale"][0] + tr["translate"][0], coords[1] * tr["scale"][1] + tr["translate"][1])


def line(arcs, refs):
    """A LineString's points from its arc references (~i = arc i reversed)."""
    out = []
    for r in refs:
        pts = arcs[r] if r >= 0 else list(reversed(arcs[~r]))
        out.extend(pts if not out else pts[1:])
    return out


class Writer:
    def __init__(self):
        self.nodes = {}  # id -> (lon, lat)
        self.ways = []  # (node ids, tags)
        self.next_id = 10_000_000

    def fresh(self, lonlat):
        self.next_id += 1
        self.nodes[self.next_id] = lonlat
        return self.next_id

    def write(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write("<?xml version='1.0' encoding='UTF-8'?>\n<osm version=\"0.6\" generator=\"topojson-to-osm.py\">\n")
            for nid, (lon, lat) in sorted(self.nodes.items()):
                f.write(f'  <node id="{nid}" lat="{lat:.7f}" lon="{lon:.7f}"/>\n')
            for wid, (refs, tags) in enumerate(self.ways, start=1):
                f.write(f'  <way id="{wid}">\n')
                for r in refs:
                    f.write(f'    <nd ref="{r}"/>\n')
                for k, v in tags.items():
                    f.write(f"    <tag k={quoteattr(k)} v={quoteattr(str(v))}/>\n")
                f.write("  </way>\n")
            f.write("</osm>\n")


def sq(a, b):
    return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2


def convert_links(topo, arcs, w):
    nodes = {}
    for g in topo["objects"].get("node", {}).get("geometries", []):
        if g.get("type") == "Point":
            nodes[g["properties"]["NO"]] = point(topo, g["coordinates"])
    for nid, ll in nodes.items():
        w.nodes[nid] = ll
    for g in topo["objects"]["link"]["geometries"]:
        if g.get("type") != "LineString":
            continue
        p = g["properties"]
        pts = line(arcs, g["arcs"])
        if len(pts) < 2:
            continue
        a, b = p["FROMNODENO"], p["TONODENO"]
        # Orient the geometry FROM -> TO (DXD's direction), by the node points when known.
        if a in nodes and b in nodes and sq(pts[0], nodes[b]) + sq(pts[-1], nodes[a]) < sq(pts[0], nodes[a]) + sq(pts[-1], nodes[b]):
            pts.reverse()
        for nid, ll in ((a, pts[0]), (b, pts[-1])):
            w.nodes.setdefault(nid, ll)
        refs = [a] + [w.fresh(ll) for ll in pts[1:-1]] + [b]
        tags = {"highway": TJL.get(p.get("TJL"), "unclassified"), "ref:link": p.get("NO")}
        if p.get("DXD") == 1:
            tags["oneway"] = "yes"
        if p.get("FS"):
            tags["maxspeed"] = round(float(p["FS"]))
        w.ways.append((refs, tags))


def convert_roads(topo, arcs, w, join_m=20.0):
    """Roads meet where they share a vertex; a line's dangling end is also joined to the
    nearest vertex of another road within join_m metres (the file is not noded at most
    junctions: dual carriageways and ramps stop short of the road they meet)."""
    by_pos = {}

    def node(ll):
        key = (round(ll[0], 7), round(ll[1], 7))
        if key not in by_pos:
            by_pos[key] = w.fresh(ll)
        return by_pos[key]

    (obj,) = topo["objects"].values()
    lines = []
    for g in obj["geometries"]:
        p = g.get("properties", {})
        parts = [g["arcs"]] if g.get("type") == "LineString" else g["arcs"] if g.get("type") == "MultiLineString" else []
        for part in parts:
            pts = line(arcs, part)
            if len(pts) >= 2:
                lines.append((pts, p))
    refs = [[node(ll) for ll in pts] for pts, _ in lines]
    # A grid of every vertex (about 110 m cells), then join the ends that meet nothing.
    cell = 0.001
    grid = {}
    degree = {}
    for li, r in enumerate(refs):
        for k, nid in enumerate(r):
            degree[nid] = degree.get(nid, 0) + (1 if k in (0, len(r) - 1) else 2)
            ll = w.nodes[nid]
            grid.setdefault((int(ll[0] / cell), int(ll[1] / cell)), []).append((nid, li))
    mx = 111320.0 * 0.87  # metres per degree of longitude at 29.6 N
    my = 110950.0
    for li, r in enumerate(refs):
        for k in (0, len(r) - 1):
            if degree[r[k]] != 1:
                continue
            ll = w.nodes[r[k]]
            best, best_d = None, join_m
            cx, cy = int(ll[0] / cell), int(ll[1] / cell)
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    for nid, lj in grid.get((cx + dx, cy + dy), []):
                        if lj == li:
                            continue
                        o = w.nodes[nid]
                        d = (((o[0] - ll[0]) * mx) ** 2 + ((o[1] - ll[1]) * my) ** 2) ** 0.5
                        if d < best_d:
                            best, best_d = nid, d
            if best is not None:
                r[k] = best
    for (pts, p), r in zip(lines, refs):
        tags = {"highway": ROADLEVEL.get(p.get("ROADLEVEL"), "unclassified"), "ref:road": p.get("ROADID")}
        if p.get("CDS"):
            tags["lanes"] = p["CDS"]
        r = [x for i, x in enumerate(r) if i == 0 or x != r[i - 1]]
        if len(r) >= 2:
            w.ways.append((r, tags))
    used = {x for r, _ in w.ways for x in r}
    for nid in [n for n in w.nodes if n not in used]:
        del w.nodes[nid]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        topo = json.load(f)
    arcs = decode_arcs(topo)
    w = Writer()
    if "link" in topo["objects"]:
        convert_links(topo, arcs, w)
    else:
        convert_roads(topo, arcs, w)
    w.write(sys.argv[2])
    print(f"{sys.argv[2]}: {len(w.nodes)} nodes, {len(w.ways)} ways")


if __name__ == "__main__":
    main()
