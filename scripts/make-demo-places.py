#!/usr/bin/env python3
"""Generate assets/places/chongqing-demo.geojson, the ILLUSTRATIVE demo places.

    scripts/make-demo-places.py            # rewrite the file, print what it holds
    scripts/make-demo-places.py --check    # exit 1 if the committed file differs

Python 3 standard library only; the same inputs give the same bytes.

Inputs (all in the repository):
  assets/geo/chongqing_districts_gcj02.geojson  the 38 districts (GCJ-02, MIT licence);
      converted to WGS84 here with the standard public GCJ-02 inverse (the same formula
      and iteration as geo/gcj02.cpp).
  assets/places/ourairports-cn50.csv  the Chongqing (iso_region CN-50) rows of OurAirports'
      China export (public domain), cut from ../shared/data/chongqing/airports/.

What it writes (see assets/places/README.md):
  heli_base     the real civil and general-aviation airfields of Chongqing (OurAirports);
  hospital      one per district at least: real hospital names, ILLUSTRATIVE positions
                (at the district seat) and trauma/helipad flags;
  landing_zone  ILLUSTRATIVE: the earlier hand-made ones, one near every other district
                seat, then a greedy cover of a 0.01 degree grid of sample points: the
                candidate (a point of a 0.02 degree grid inside Chongqing) that brings the
                most uncovered samples within --radius-km is added, until --target of
                Chongqing's area is covered and each district reaches --district-target.
                (A full cover, --target 1, takes about 580; 95% takes about 360.)
  station       ILLUSTRATIVE rural traffic-safety stations (劝导站) in the 29 districts
                and counties outside the nine central ones, between each county seat and
                its outlying landing zones (not surveyed roads).
Every illustrative feature carries "illustrative": true.
"""
import argparse
import csv
import heapq
import json
import math
import os
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DISTRICTS = os.path.join(ROOT, "assets/geo/chongqing_districts_gcj02.geojson")
AIRPORTS = os.path.join(ROOT, "assets/places/ourairports-cn50.csv")
OUT = os.path.join(ROOT, "assets/places/chongqing-demo.geojson")

EARTH_RADIUS_KM = 6371.0088  # geo::earth_radius_m

# ------------------------------------------------------------------ GCJ-02 (geo/gcj02.cpp)
_A = 6378245.0
_EE = 0.00669342162296594323


def _tlat(x, y):
    r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    r += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    r += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    r += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return r


def _tlon(x, y):
    r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    r += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    r += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    r += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return r


def wgs84_to_gcj02(lat, lon):
    dlat = _tlat(lon - 105.0, lat - 35.0)
    dlon = _tlon(lon - 105.0, lat - 35.0)
    rad = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad) ** 2
    sq = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sq) * math.pi)
    dlon = (dlon * 180.0) / (_A / sq * math.cos(rad) * math.pi)
    return lat + dlat, lon + dlon


def gcj02_to_wgs84(lat, lon):
    wlat, wlon = lat, lon
    for _ in range(30):
        flat, flon = wgs84_to_gcj02(wlat, wlon)
        dlat, dlon = lat - flat, lon - flon
        wlat += dlat
        wlon += dlon
        if abs(dlat) < 1e-10 and abs(dlon) < 1e-10:
            break
    return wlat, wlon


# ------------------------------------------------------------------ geometry


def distance_km(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


class District:
    def __init__(self, feature):
        pr = feature["properties"]
        self.name = pr["name"]
        self.code = str(pr["adcode"])
        self.seat = gcj02_to_wgs84(float(pr["centerlat"]), float(pr["centerlng"]))
        g = feature["geometry"]
        polys = g["coordinates"] if g["type"] == "MultiPolygon" else [g["coordinates"]]
        self.rings = []  # WGS84 rings of (lon, lat), outer and holes alike (even-odd rule)
        for poly in polys:
            for ring in poly:
                pts = []
                for lon, lat in ring:
                    wlat, wlon = gcj02_to_wgs84(lat, lon)
                    pts.append((wlon, wlat))
                self.rings.append(pts)
        xs = [x for r in self.rings for x, _ in r]
        ys = [y for r in self.rings for _, y in r]
        self.bbox = (min(xs), min(ys), max(xs), max(ys))

    def contains(self, lat, lon):
        x0, y0, x1, y1 = self.bbox
        if not (x0 <= lon <= x1 and y0 <= lat <= y1):
            return False
        inside = False
        for ring in self.rings:
            n = len(ring)
            for i in range(n):
                ax, ay = ring[i]
                bx, by = ring[(i + 1) % n]
                if (ay > lat) != (by > lat) and lon < ax + (lat - ay) * (bx - ax) / (by - ay):
                    inside = not inside
        return inside


def grid_inside(districts, step, lat0=28.0, lon0=105.0, rows=450, cols=560):
    """Points (i, j) -> district index of the grid lat0 + (i + 0.5) step, lon0 + (j + 0.5) step
    inside a district, by scanlines (each row's crossings with every ring, paired even-odd)."""
    cells = {}
    for d_index, d in enumerate(districts):
        crossings = {}
        for ring in d.rings:
            n = len(ring)
            for k in range(n):
                ax, ay = ring[k]
                bx, by = ring[(k + 1) % n]
                if ay == by:
                    continue
                lo, hi = min(ay, by), max(ay, by)
                # rows whose latitude y satisfies lo <= y < hi
                i0 = max(0, math.ceil((lo - lat0) / step - 0.5))
                i1 = min(rows - 1, math.ceil((hi - lat0) / step - 0.5) - 1)
                for i in range(i0, i1 + 1):
                    y = lat0 + (i + 0.5) * step
                    if lo <= y < hi:
                        crossings.setdefault(i, []).append(ax + (y - ay) * (bx - ax) / (by - ay))
        for i, xs in crossings.items():
            xs.sort()
            for a, b in zip(xs[0::2], xs[1::2]):
                j0 = max(0, math.ceil((a - lon0) / step - 0.5))
                j1 = min(cols - 1, math.ceil((b - lon0) / step - 0.5) - 1)
                for j in range(j0, j1 + 1):
                    cells.setdefault((i, j), d_index)
    return cells


# ------------------------------------------------------------------ the districts' own data

# Pinyin for ids (LZ-wuxi-03, ST-wuxi-01, H-wuxi).
SLUG = {
    "500101": "wanzhou", "500102": "fuling", "500103": "yuzhong", "500104": "dadukou",
    "500105": "jiangbei", "500106": "shapingba", "500107": "jiulongpo", "500108": "nanan",
    "500109": "beibei", "500110": "qijiang", "500111": "dazu", "500112": "yubei",
    "500113": "banan", "500114": "qianjiang", "500115": "changshou", "500116": "jiangjin",
    "500117": "hechuan", "500118": "yongchuan", "500119": "nanchuan", "500120": "bishan",
    "500151": "tongliang", "500152": "tongnan", "500153": "rongchang", "500154": "kaizhou",
    "500155": "liangping", "500156": "wulong", "500229": "chengkou", "500230": "fengdu",
    "500231": "dianjiang", "500233": "zhongxian", "500235": "yunyang", "500236": "fengjie",
    "500237": "wushan", "500238": "wuxi", "500240": "shizhu", "500241": "xiushan",
    "500242": "youyang", "500243": "pengshui",
}
# The nine central (urban) districts: no rural stations there (geo::Zones' default urban set).
URBAN = {"500103", "500104", "500105", "500106", "500107", "500108", "500109", "500112", "500113"}
# Short names for the generated places' names (石柱土家族自治县 -> 石柱县).
SHORT = {"500240": "石柱县", "500241": "秀山县", "500242": "酉阳县", "500243": "彭水县"}

# The places of the earlier hand-made demo file, kept with their ids and positions (WGS84):
# tests and demos name some of them. Positions and flags are illustrative.
LEGACY_HOSPITALS = [
    ("H-XN", "西南医院", 29.5563, 106.4604, True, True),
    ("H-CQMU1", "重医附一院", 29.5392, 106.5135, True, True),
    ("H-DP", "大坪医院", 29.539, 106.4993, True, False),
    ("H-EMC", "重庆市急救医疗中心", 29.5578, 106.5457, True, True),
    ("H-SX", "三峡中心医院", 30.81, 108.389, True, True),
    ("H-YC", "永川区人民医院", 29.356, 105.894, True, False),
    ("H-FL", "涪陵中心医院", 29.71, 107.39, True, True),
    ("H-QJ", "黔江中心医院", 29.533, 108.77, True, False),
    ("H-QJX", "綦江区人民医院", 29.028, 106.651, False, False),
    ("H-CK", "城口县人民医院", 31.947, 108.664, False, False),
]
LEGACY_LZS = [
    ("LZ-HC", "合川停机坪", 30.005, 106.265),
    ("LZ-CS", "长寿停机坪", 29.858, 107.081),
    ("LZ-JJ", "江津停机坪", 29.29, 106.259),
    ("LZ-QJ", "綦江停机坪", 29.03, 106.66),
    ("LZ-NC", "南川停机坪", 29.157, 107.099),
    ("LZ-WL", "武隆停机坪", 29.325, 107.76),
    ("LZ-FD", "丰都停机坪", 29.863, 107.73),
    ("LZ-KZ", "开州停机坪", 31.16, 108.393),
    ("LZ-CK", "城口停机坪", 31.948, 108.67),
    ("LZ-SZ", "石柱停机坪", 29.999, 108.112),
    ("LZ-BS", "璧山停机坪", 29.592, 106.227),
    ("LZ-AT", "奥体中心停机坪", 29.533, 106.488),
]
# A hospital for each district without one above: a real hospital's name, placed
# (illustratively) at the district seat; (name, trauma, helipad). Trauma is set for the
# large regional and district hospitals that plausibly run a trauma service; helipads only
# where the hand-made set had them.
HOSPITALS = {
    "500104": ("大渡口区人民医院", False, False),
    "500105": ("江北区人民医院", False, False),
    "500107": ("九龙坡区人民医院", False, False),
    "500108": ("南岸区人民医院", False, False),
    "500109": ("重庆市第九人民医院", True, False),
    "500111": ("大足区人民医院", False, False),
    "500112": ("渝北区人民医院", False, False),
    "500113": ("巴南区人民医院", False, False),
    "500115": ("长寿区人民医院", True, False),
    "500116": ("江津区中心医院", True, False),
    "500117": ("合川区人民医院", True, False),
    "500119": ("南川区人民医院", False, False),
    "500120": ("璧山区人民医院", False, False),
    "500151": ("铜梁区人民医院", False, False),
    "500152": ("潼南区人民医院", False, False),
    "500153": ("荣昌区人民医院", False, False),
    "500154": ("开州区人民医院", True, False),
    "500155": ("梁平区人民医院", False, False),
    "500156": ("武隆区人民医院", False, False),
    "500230": ("丰都县人民医院", False, False),
    "500231": ("垫江县人民医院", True, False),
    "500233": ("忠县人民医院", False, False),
    "500235": ("云阳县人民医院", True, False),
    "500236": ("奉节县人民医院", True, False),
    "500237": ("巫山县人民医院", False, False),
    "500238": ("巫溪县人民医院", False, False),
    "500240": ("石柱县人民医院", False, False),
    "500241": ("秀山县人民医院", True, False),
    "500242": ("酉阳县人民医院", False, False),
    "500243": ("彭水县人民医院", False, False),
}
# OurAirports idents to Chinese names; the two military air bases (CN-0030 Baishiyi,
# CN-0034 Dazu) are left out: no civil helicopter is based there.
AIRFIELDS = {
    "ZUCK": "重庆江北国际机场 (Jiangbei)",
    "JIQ": "黔江武陵山机场 (Qianjiang Wulingshan)",
    "ZUWL": "武隆仙女山机场 (Xiannüshan)",
    "ZUWX": "万州五桥机场 (Wanzhou Wuqiao)",
    "ZUWS": "巫山机场 (Wushan)",
    "CN-0358": "涪陵机场 (Fuling)",
    "YGA": "永川大安通用机场 (Yongchuan Da'an)",
    "ZULP": "梁平机场 (Liangping)",
}


def short(d):
    return SHORT.get(d.code, d.name)


# ------------------------------------------------------------------ building the set


def locate(districts, lat, lon):
    for k, d in enumerate(districts):
        if d.contains(lat, lon):
            return k
    return None


def near_inside(d, lat, lon, km):
    """A point about km from (lat, lon), inside d: the first of eight bearings that works."""
    for bearing in (45, 135, 225, 315, 0, 90, 180, 270):
        b = math.radians(bearing)
        p = (lat + km * math.cos(b) / 111.195, lon + km * math.sin(b) / (111.195 * math.cos(math.radians(lat))))
        if d.contains(*p):
            return p
    raise SystemExit(f"no point {km} km from the seat of {d.name} lies inside it")


def build(radius_km, step, target, district_target):
    with open(DISTRICTS, encoding="utf-8") as f:
        districts = [District(feat) for feat in json.load(f)["features"]]
    districts.sort(key=lambda d: d.code)
    assert len(districts) == 38 and set(SLUG) == {d.code for d in districts}
    for d in districts:
        if not d.contains(*d.seat):
            raise SystemExit(f"the seat of {d.name} lies outside its outline")

    features = []

    def add(kind, pid, name, lat, lon, **props):
        p = {"id": pid, "name": name, "kind": kind}
        p.update(props)
        features.append({"type": "Feature", "properties": p,
                         "geometry": {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]}})

    # Helicopter bases: the real airfields.
    with open(AIRPORTS, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["iso_region"] == "CN-50"]
    for r in sorted(rows, key=lambda r: -int(r["score"] or 0)):
        if r["ident"] not in AIRFIELDS:
            continue
        add("heli_base", r["ident"], AIRFIELDS[r["ident"]], float(r["latitude_deg"]), float(r["longitude_deg"]),
            source=f"OurAirports {r['id']}", name_en=r["name"])

    # Hospitals: the earlier set, then one at the seat of every district still without one.
    has_hospital = set()
    for pid, name, lat, lon, trauma, helipad in LEGACY_HOSPITALS:
        k = locate(districts, lat, lon)
        has_hospital.add(k)
        add("hospital", pid, name, lat, lon, trauma=trauma, helipad=helipad, illustrative=True,
            district=districts[k].name)
    for k, d in enumerate(districts):
        if k in has_hospital:
            continue
        name, trauma, helipad = HOSPITALS[d.code]
        add("hospital", "H-" + SLUG[d.code], name, d.seat[0], d.seat[1], trauma=trauma, helipad=helipad,
            illustrative=True, district=d.name)

    # Landing zones: the earlier set, one 1.5 km from every other seat, then a greedy cover.
    lzs = []  # (lat, lon, district index, id or None, name or None)
    for pid, name, lat, lon in LEGACY_LZS:
        lzs.append((lat, lon, locate(districts, lat, lon), pid, name))
    for k, d in enumerate(districts):
        if any(z[2] == k for z in lzs):
            continue
        lat, lon = near_inside(d, d.seat[0], d.seat[1], 1.5)
        lzs.append((lat, lon, k, None, f"{short(d)}城区临时起降点"))

    # Samples: a step-degree grid inside every district (each sample stands for the same
    # area); for a full cover (target 1) also the districts' outlines (every vertex, thinned
    # to 300 m), so slivers and borders count too.
    lat0, lon0 = 28.0, 105.0
    grid = grid_inside(districts, step, lat0, lon0, rows=int(4.4 / step), cols=int(5.4 / step))
    samples = [(lat0 + (i + 0.5) * step, lon0 + (j + 0.5) * step) for (i, j) in sorted(grid)]
    if target >= 1:
        for d in districts:
            last = None
            for ring in d.rings:
                for lon, lat in ring:
                    if last is None or distance_km(lat, lon, *last) > 0.3:
                        samples.append((lat, lon))
                        last = (lat, lon)
    # Bucket the samples by grid cell for the range searches.
    cell_of = lambda lat, lon: (int(math.floor((lat - lat0) / step)), int(math.floor((lon - lon0) / step)))
    buckets = {}
    for s, (lat, lon) in enumerate(samples):
        buckets.setdefault(cell_of(lat, lon), []).append(s)
    reach_i = int(math.ceil(radius_km / (111.195 * step))) + 1
    reach_j = int(math.ceil(radius_km / (111.195 * step * math.cos(math.radians(32.3))))) + 1

    def within(lat, lon):
        ci, cj = cell_of(lat, lon)
        coslat = math.cos(math.radians(lat))
        out = []
        for i in range(ci - reach_i, ci + reach_i + 1):
            for j in range(cj - reach_j, cj + reach_j + 1):
                for s in buckets.get((i, j), ()):
                    slat, slon = samples[s]
                    # A fast bound first (equirectangular, 1% generous), then the exact distance.
                    dy = (slat - lat) * 111.195
                    dx = (slon - lon) * 111.195 * coslat
                    if dx * dx + dy * dy <= (radius_km * 1.01) ** 2 and distance_km(lat, lon, slat, slon) <= radius_km:
                        out.append(s)
        return out

    covered = bytearray(len(samples))
    for lat, lon, _, _, _ in lzs:
        for s in within(lat, lon):
            covered[s] = 1
    # Which district each sample lies in (outline samples: none).
    sample_district = [k for _, k in sorted(grid.items())] + [None] * (len(samples) - len(grid))
    # Candidates: every other grid point (2 x step apart), in a fixed order.
    candidates = [(lat0 + (i + 0.5) * step, lon0 + (j + 0.5) * step, k)
                  for (i, j), k in sorted(grid.items()) if i % 2 == 0 and j % 2 == 0]
    reach_all = [within(lat, lon) for lat, lon, _ in candidates]
    curve = []

    def greedy(wanted, stop):
        """Lazy greedy: add the candidate covering the most uncovered wanted samples until
        `stop` of them are covered. Ties go to the earlier candidate (fixed order)."""
        total = sum(1 for s in range(len(samples)) if wanted(s))
        n_covered = sum(1 for s in range(len(samples)) if wanted(s) and covered[s])
        if n_covered >= stop * total:
            return
        reach = [[s for s in r if wanted(s) and not covered[s]] for r in reach_all]
        heap = [(-len(r), c) for c, r in enumerate(reach) if r]
        heapq.heapify(heap)
        marks = [0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999] if not curve else []
        while heap and n_covered < stop * total:
            neg, c = heapq.heappop(heap)
            reach[c] = [s for s in reach[c] if not covered[s]]
            if not reach[c]:
                continue
            if -neg != len(reach[c]):
                heapq.heappush(heap, (-len(reach[c]), c))
                continue
            for s in reach_all[c]:
                covered[s] = 1
            n_covered += len(reach[c])
            lat, lon, k = candidates[c]
            lzs.append((lat, lon, k, None, None))
            while marks and n_covered >= marks[0] * total:
                curve.append((marks.pop(0), len(lzs)))

    before = len(lzs)
    # The whole municipality to `target`, then any district still below `district_target`
    # (a district's share of the area matters to its own people) topped up alone.
    greedy(lambda s: True, target)
    for k in range(len(districts)):
        greedy(lambda s, k=k: sample_district[s] == k, district_target)
    added = len(lzs) - before

    # Ids and names: numbered per district from north-west to south-east, the seat's first.
    by_district = {}
    for z in lzs:
        by_district.setdefault(z[2], []).append(z)
    lz_by_district = {}
    for k, d in enumerate(districts):
        zs = by_district.get(k, [])
        named = [z for z in zs if z[4] is not None]
        rest = sorted((z for z in zs if z[4] is None), key=lambda z: (-round(z[0], 6), round(z[1], 6)))
        n = 0
        out = []
        for lat, lon, _, pid, name in named + rest:
            if pid is None:
                n += 1
                pid = f"LZ-{SLUG[d.code]}-{n:02d}"
            if name is None:
                name = f"{short(d)}临时起降点{n:02d}"
            out.append((pid, name, lat, lon))
        lz_by_district[k] = out
        for pid, name, lat, lon in out:
            add("landing_zone", pid, name, lat, lon, illustrative=True, district=d.name)

    # Stations: 2 to 6 per rural district (about one per 1,000 km2), each 55% of the way
    # from the county seat to one of its landing zones, those spread around the compass.
    station_count = 0
    for k, d in enumerate(districts):
        if d.code in URBAN:
            continue
        area = district_area_km2(d)
        n = max(2, min(6, round(area / 1000) + 1))
        seat = d.seat
        spokes = [(lat, lon) for _, _, lat, lon in lz_by_district[k] if distance_km(*seat, lat, lon) > 6]
        spokes.sort(key=lambda p: math.atan2(p[0] - seat[0], (p[1] - seat[1]) * math.cos(math.radians(seat[0]))))
        picked = [spokes[(i * len(spokes)) // n] for i in range(n)] if len(spokes) >= n else spokes
        m = 0
        for lat, lon in picked:
            p = (seat[0] + 0.55 * (lat - seat[0]), seat[1] + 0.55 * (lon - seat[1]))
            if not d.contains(*p):  # the county bends: at the landing zone's own spot
                p = (lat, lon)
            m += 1
            add("station", f"ST-{SLUG[d.code]}-{m:02d}", f"{short(d)}{m:02d}号劝导站", p[0], p[1],
                illustrative=True, district=d.name)
        station_count += m

    # What it holds: the share of the grid samples (area) within radius_km of a landing zone.
    share = {}
    for s, k in enumerate(sample_district):
        if k is not None:
            n, c = share.get(k, (0, 0))
            share[k] = (n + 1, c + covered[s])
    grid_total = sum(n for n, _ in share.values())
    lowest = min(share, key=lambda k: share[k][1] / share[k][0])
    stats = {"samples": len(samples), "added_by_cover": added, "stations": station_count, "curve": curve,
             "coverage": sum(c for _, c in share.values()) / grid_total,
             "lowest": (districts[lowest].name, share[lowest][1] / share[lowest][0])}
    return features, stats


def district_area_km2(d):
    """Shoelace on an equirectangular projection about the district's middle latitude."""
    mid = math.radians((d.bbox[1] + d.bbox[3]) / 2)
    total = 0.0
    for ring in d.rings:
        s = 0.0
        for (ax, ay), (bx, by) in zip(ring, ring[1:] + ring[:1]):
            s += ax * by - bx * ay
        total += s
    return abs(total) / 2 * (111.195 ** 2) * math.cos(mid)


def render(features):
    head = {
        "type": "FeatureCollection",
        "name": "chongqing-demo-places",
        "illustrative": True,
        "note": ("ILLUSTRATIVE demo set, generated by scripts/make-demo-places.py. Helicopter bases are "
                 "real airfields from OurAirports (public domain). Hospital names are real but their "
                 "positions, trauma and helipad flags are illustrative; landing zones and rural stations "
                 "(劝导站) are invented. Every illustrative feature says \"illustrative\": true. No public "
                 "data of Chongqing's hospitals, helipads, landing zones or stations was found. Replace "
                 "with the command centre's own list before real use: see assets/places/README.md."),
    }
    lines = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in features]
    text = json.dumps(head, ensure_ascii=False, indent=1)[:-2] + ',\n "features": [\n'
    text += ",\n".join("  " + line for line in lines) + "\n ]\n}\n"
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--radius-km", type=float, default=10.0,
                    help="a sample is covered by a landing zone this close (default 10, the policy's "
                         "--lz-max-km)")
    ap.add_argument("--target", type=float, default=0.95,
                    help="stop adding landing zones once this share of the samples is covered (default 0.95)")
    ap.add_argument("--district-target", type=float, default=0.9,
                    help="then top up any district below this share (default 0.9)")
    ap.add_argument("--step", type=float, default=0.01, help="sample grid step in degrees (default 0.01)")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = ap.parse_args()
    features, stats = build(args.radius_km, args.step, args.target, args.district_target)
    text = render(features)
    kinds = {}
    for f in features:
        kinds[f["properties"]["kind"]] = kinds.get(f["properties"]["kind"], 0) + 1
    print("places: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())), file=sys.stderr)
    print(f"landing zones added by the greedy cover: {stats['added_by_cover']} "
          f"(samples: {stats['samples']}, radius {args.radius_km} km)", file=sys.stderr)
    print("landing zones in all when the greedy cover reached: " +
          ", ".join(f"{f:.1%} {n}" for f, n in stats["curve"]), file=sys.stderr)
    print(f"a landing zone within {args.radius_km:g} km of {stats['coverage']:.1%} of Chongqing's area "
          f"(lowest district: {stats['lowest'][0]} {stats['lowest'][1]:.1%})", file=sys.stderr)
    if args.check:
        with open(args.out, encoding="utf-8") as f:
            same = f.read() == text
        print(f"{args.out}: {'up to date' if same else 'DIFFERS from the generator'}", file=sys.stderr)
        sys.exit(0 if same else 1)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
