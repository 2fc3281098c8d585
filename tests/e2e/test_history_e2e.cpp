// History through the real dispatchd (issue 17): GET /api/incidents with the filters from,
// to, district, severity, state and plate, combined with limit and before; the CSV export
// (format=csv and /api/incidents.csv), streamed in chunks across the store's pages.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>

#include "tests/e2e/harness.hpp"

using namespace e2e;

namespace {

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// One request (HEAD or GET) on an open connection; the parser undoes chunking.
Reply exchange(beast::tcp_stream& stream, beast::flat_buffer& buf, http::verb method, const std::string& target,
               const std::string& token) {
  http::request<http::empty_body> req{method, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::authorization, "Bearer " + token);
  http::write(stream, req);
  http::response_parser<http::string_body> parser;
  parser.body_limit(256 * 1024 * 1024);
  parser.skip(method == http::verb::head);
  http::read(stream, buf, parser);
  Reply r;
  r.status = static_cast<int>(parser.get().result_int());
  for (const auto& f : parser.get()) {
    std::string name(f.name_string());
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    r.headers[name] = std::string(f.value());
  }
  r.body = parser.get().body();
  return r;
}

Reply get(unsigned short port, const std::string& target, const std::string& token = "c-secret") {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  beast::flat_buffer buf;
  return exchange(stream, buf, http::verb::get, target, token);
}

// RFC 4180: rows of fields; quoted fields may hold commas, doubled quotes, line breaks.
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, in_quotes = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') field += '"', ++i;
      else if (c == '"') in_quotes = false;
      else field += c;
    } else if (c == '"' && field.empty() && !quoted) {
      in_quotes = quoted = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      quoted = false;
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      ++i;
      row.push_back(std::move(field));
      field.clear();
      quoted = false;
      rows.push_back(std::move(row));
      row.clear();
    } else {
      REQUIRE_MESSAGE((c != '\n' && c != '"'), "stray line break or quote in the CSV at byte ", i);
      field += c;
    }
  }
  REQUIRE_MESSAGE(row.empty(), "the CSV does not end with CRLF");
  REQUIRE(field.empty());
  return rows;
}

std::string fmt_hex(unsigned char c) {
  static const char* hex = "0123456789ABCDEF";
  return std::string{'%', hex[c >> 4], hex[c & 15]};
}

// Percent-encodes a query value.
std::string encode(const std::string& s) {
  std::string out;
  for (const unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.') out += static_cast<char>(c);
    else out += fmt_hex(c);
  }
  return out;
}

}  // namespace

TEST_CASE("history: every filter, their combination, paging with before, and the CSV export") {
  TempDir dir;
  const std::string fleet = R"({"units": [{"id": "M1", "kind": "moto", "callsign": "渝警保01"}]})";
  Server srv({"--db", dir.file("d.db"), "--tokens", dir.file("tokens.json", default_tokens), "--fleet",
              dir.file("fleet.json", fleet), "--rate", "100000", "--max-open-per-token", "0"});
  const auto port = srv.port();

  // M1 on duty in 渝中区: the first report it can take is assigned to it.
  Ws gw(port, "/ws/unit", "g-secret");
  gw.send(position("M1", 29.556, 106.573));
  Ws console(port, "/ws/console", "c-secret");
  REQUIRE(console.recv_type("snapshot"));

  // 1,100 reports (more than two of the export's pages of 500), a minute apart two days
  // ago, over three places in different districts, all severities, some remote (minor,
  // drivable, agreed), every 7th with the plate 渝C77777 among its vehicles.
  const std::int64_t t0 = now_ms() - 2 * 86'400'000LL;
  const double places[3][2] = {{29.556, 106.573}, {29.575, 106.535}, {29.541, 106.447}};
  const char* severities[] = {"minor", "injury", "critical", "minor"};
  constexpr int N = 1100;
  Ws rep(port, "/ws/report", "r-secret");
  std::string frame = "[";
  for (int k = 1; k <= N; ++k) {
    json::object r{{"type", "report"}, {"id", "h" + std::to_string(k)}, {"lat", places[k % 3][0]},
                   {"lon", places[k % 3][1]}, {"severity", severities[k % 4]}, {"ts", t0 + k * 60'000LL}};
    json::array vehicles{json::object{{"plate", "渝A" + std::to_string(10000 + k)}, {"insurer", "PICC"}}};
    if (k % 7 == 0) vehicles.push_back(json::object{{"plate", "渝C77777"}, {"insurer", "平安"}});
    r["vehicles"] = vehicles;
    if (k % 4 == 0) r["drivable"] = true, r["parties_agree"] = true;
    if (k == 5) r["note"] = "两车追尾, \"急\"\r\n第二行";
    if (k == 6) r["note"] = "=HYPERLINK(\"http://x\")";
    if (frame.size() > 1) frame += ',';
    frame += json::serialize(r);
    if (k % 100 == 0) {
      rep.send(frame + "]");
      frame = "[";
    }
  }
  std::map<std::string, std::string> incident_of;  // report id -> incident id
  while (incident_of.size() < N) {
    auto acc = rep.recv_type("accepted", 10s);
    REQUIRE(acc);
    incident_of[str(*acc, "id")] = str(*acc, "incident");
  }
  // Close every 5th from the console.
  for (int k = 5; k <= N; k += 5)
    console.send(json::serialize(json::object{{"type", "close"}, {"incident", incident_of["h" + std::to_string(k)]}}));
  const std::string last_closed = incident_of["h" + std::to_string(N)];
  REQUIRE(console.recv_until([&](const json::object& o) {
    return str(o, "type") == "incident" && str(o, "id") == last_closed && str(o, "state") == "closed";
  }, 10s));

  // The truth: everything, unfiltered.
  auto all_reply = get(port, "/api/incidents?state=all");
  REQUIRE(all_reply.status == 200);
  const auto all = json::parse(all_reply.body).as_array();
  REQUIRE(all.size() == N);
  std::map<std::string, json::object> by_id;
  for (const auto& v : all) by_id[str(v.as_object(), "id")] = v.as_object();

  auto has_plate = [](const json::object& o, const std::string& plate) {
    for (const auto& v : o.at("vehicles").as_array())
      if (str(v.as_object(), "plate") == plate) return true;
    return false;
  };
  auto ts = [](const json::object& o) { return o.at("reported_ts").to_number<std::int64_t>(); };
  auto expect = [&](const std::function<bool(const json::object&)>& pred) {
    std::vector<std::string> ids;
    for (const auto& v : all)
      if (pred(v.as_object())) ids.push_back(str(v.as_object(), "id"));
    return ids;
  };
  // Every page of `query` with limit `page`, following before.
  auto pages = [&](const std::string& query, int page) {
    std::vector<std::string> ids;
    std::string before;
    for (int n = 0; n < 2000; ++n) {
      auto r = get(port, "/api/incidents?" + query + "&limit=" + std::to_string(page) +
                             (before.empty() ? "" : "&before=" + before));
      REQUIRE(r.status == 200);
      const auto got = json::parse(r.body).as_array();
      CHECK(got.size() <= static_cast<std::size_t>(page));
      for (const auto& v : got) ids.push_back(str(v.as_object(), "id"));
      if (got.size() < static_cast<std::size_t>(page)) break;
      before = ids.back();
    }
    return ids;
  };
  auto nontrivial = [&](const std::vector<std::string>& ids) {
    CHECK(!ids.empty());
    CHECK(ids.size() < static_cast<std::size_t>(N));
  };
  std::string district0 = str(by_id[incident_of["h3"]], "district");
  REQUIRE(!district0.empty());
  CHECK(str(by_id[incident_of["h1"]], "district") != district0);

  SUBCASE("from and to, inclusive") {
    const auto from = t0 + 100 * 60'000LL, to = t0 + 250 * 60'000LL;
    const auto want = expect([&](const json::object& o) { return ts(o) >= from && ts(o) <= to; });
    CHECK(want.size() == 151);
    CHECK(pages("state=all&from=" + std::to_string(from) + "&to=" + std::to_string(to), 40) == want);
    CHECK(pages("state=all&from=" + std::to_string(t0 + N * 60'000LL), 40).size() == 1);
  }
  SUBCASE("district") {
    const auto want = expect([&](const json::object& o) { return str(o, "district") == district0; });
    nontrivial(want);
    CHECK(pages("state=all&district=" + encode(district0), 100) == want);
  }
  SUBCASE("severity") {
    const auto want = expect([&](const json::object& o) { return str(o, "severity") == "critical"; });
    nontrivial(want);
    CHECK(pages("state=all&severity=critical", 64) == want);
  }
  SUBCASE("state: one state, open, all") {
    for (const char* st : {"closed", "remote", "dispatching"}) {
      CAPTURE(st);
      const auto want = expect([&](const json::object& o) { return str(o, "state") == st; });
      nontrivial(want);
      CHECK(pages(std::string("state=") + st, 100) == want);
    }
    const auto open = expect([&](const json::object& o) { return str(o, "state") != "closed" && str(o, "state") != "cancelled"; });
    nontrivial(open);
    CHECK(pages("state=open", 300) == open);
    CHECK(pages("severity=injury", 300) ==
          expect([&](const json::object& o) { return str(o, "severity") == "injury" && str(o, "state") != "closed"; }));
  }
  SUBCASE("plate") {
    const auto want = expect([&](const json::object& o) { return has_plate(o, "渝C77777"); });
    CHECK(want.size() == N / 7);
    CHECK(pages("state=all&plate=" + encode("渝C77777"), 50) == want);
    CHECK(pages("state=all&plate=" + encode("渝c 77777"), 50) == want);
    CHECK(pages("state=all&plate=" + encode("渝A10042"), 50) == std::vector<std::string>{incident_of["h42"]});
  }
  SUBCASE("everything combined, paged one by one and in pages of 3") {
    const auto from = t0 + 50 * 60'000LL, to = t0 + 1000 * 60'000LL;
    const auto want = expect([&](const json::object& o) {
      return ts(o) >= from && ts(o) <= to && str(o, "district") == district0 && str(o, "severity") == "minor" &&
             str(o, "state") == "closed" && has_plate(o, "渝C77777");
    });
    CHECK(!want.empty());
    const std::string q = "from=" + std::to_string(from) + "&to=" + std::to_string(to) + "&district=" +
                          encode(district0) + "&severity=minor&state=closed&plate=" + encode("渝C77777");
    CHECK(pages(q, 1) == want);
    CHECK(pages(q, 3) == want);
  }
  SUBCASE("paging through everything with before") {
    std::vector<std::string> want;
    for (const auto& v : all) want.push_back(str(v.as_object(), "id"));
    CHECK(pages("state=all", 333) == want);
  }
  SUBCASE("bad filters are refused with bad_message") {
    for (const char* q : {"severity=bad", "state=closing", "from=yesterday", "to=-1", "format=xml",
                          "from=200&to=100", "plate=", "district="}) {
      CAPTURE(q);
      auto r = get(port, std::string("/api/incidents?") + q);
      CHECK(r.status == 400);
      CHECK(r.body.find("bad_message") != std::string::npos);
    }
    CHECK(get(port, "/api/incidents.csv", "r-secret").status == 403);
    CHECK(get(port, "/api/incidents.csv", "nope").status == 401);
  }
  SUBCASE("CSV: every match, across the export's pages, escaped") {
    auto r = get(port, "/api/incidents.csv?state=all");
    REQUIRE(r.status == 200);
    CHECK(r.headers["content-type"] == "text/csv; charset=utf-8");
    CHECK(r.headers["transfer-encoding"] == "chunked");
    CHECK(r.headers["content-disposition"].starts_with("attachment; filename=\"incidents-"));
    CHECK(r.headers["content-disposition"].ends_with(".csv\""));
    const auto rows = parse_csv(r.body);
    REQUIRE(rows.size() == N + 1);
    const std::vector<std::string> header{"id", "report_id", "state", "severity", "lat", "lon", "district",
                                          "reported_at", "reported_ts", "plates", "units", "closed_at",
                                          "closed_ts", "note"};
    CHECK(rows[0] == header);
    std::vector<std::string> ids;
    std::size_t with_units = 0;
    for (std::size_t i = 1; i < rows.size(); ++i) {
      const auto& row = rows[i];
      REQUIRE(row.size() == header.size());
      ids.push_back(row[0]);
      const auto& o = by_id[row[0]];
      CHECK(row[1] == str(o, "report_id"));
      CHECK(row[2] == str(o, "state"));
      CHECK(row[3] == str(o, "severity"));
      CHECK(row[6] == str(o, "district"));
      CHECK(row[8] == std::to_string(ts(o)));
      CHECK(row[7].size() == 29);
      CHECK(row[7].ends_with("+08:00"));
      std::string plates;
      for (const auto& v : o.at("vehicles").as_array())
        plates += (plates.empty() ? "" : "; ") + str(v.as_object(), "plate");
      CHECK(row[9] == plates);
      std::string units;
      for (const auto& a : o.at("assignments").as_array()) units += (units.empty() ? "" : "; ") + str(a.as_object(), "unit");
      CHECK(row[10] == units);
      if (!units.empty()) ++with_units;
      CHECK((row[2] == "closed") == !row[12].empty());
      CHECK(row[13] == (row[0] == incident_of["h6"] ? "'" : "") + str(o, "note"));
    }
    CHECK(with_units == 1);
    std::vector<std::string> want;
    for (const auto& v : all) want.push_back(str(v.as_object(), "id"));
    CHECK(ids == want);
    // The note with a comma, quotes, Chinese and a line break came back whole (checked
    // above); the formula-like one is defused for spreadsheets.
    const auto h6 = std::find(ids.begin(), ids.end(), incident_of["h6"]) - ids.begin();
    CHECK(r.body.find("\"'=HYPERLINK(\"\"http://x\"\")\"") != std::string::npos);
    CHECK(rows[static_cast<std::size_t>(h6) + 1][13] == "'=HYPERLINK(\"http://x\")");
    CHECK(r.body.find("\"两车追尾, \"\"急\"\"\r\n第二行\"") != std::string::npos);
    // Reported at: ISO-8601 in +08:00 for reported_ts.
    const auto& first = rows[1];
    const auto ms = std::stoll(first[8]);
    const std::time_t secs = static_cast<std::time_t>(ms / 1000 + 8 * 3600);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char iso[32];
    std::strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S", &tm);
    char frac[8];
    std::snprintf(frac, sizeof frac, ".%03lld", ms % 1000);
    CHECK(first[7] == std::string(iso) + frac + "+08:00");
  }
  SUBCASE("CSV with filters, format=csv, a limit and before") {
    const auto want = expect([&](const json::object& o) { return str(o, "severity") == "critical"; });
    auto r = get(port, "/api/incidents?state=all&severity=critical&format=csv");
    REQUIRE(r.status == 200);
    const auto rows = parse_csv(r.body);
    std::vector<std::string> ids;
    for (std::size_t i = 1; i < rows.size(); ++i) ids.push_back(rows[i][0]);
    CHECK(ids == want);
    r = get(port, "/api/incidents.csv?state=all&severity=critical&limit=10&before=" + want[4]);
    const auto some = parse_csv(r.body);
    REQUIRE(some.size() == 11);
    CHECK(some[1][0] == want[5]);
    CHECK(some[10][0] == want[14]);
    r = get(port, "/api/incidents.csv?state=all&plate=NOPE");
    CHECK(r.status == 200);
    CHECK(parse_csv(r.body).size() == 1);  // the header alone
  }
  SUBCASE("HEAD of the export, then a GET on the same connection: the stream stays in step") {
    asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    beast::flat_buffer buf;
    auto h = exchange(stream, buf, http::verb::head, "/api/incidents.csv?state=all", "c-secret");
    CHECK(h.status == 200);
    CHECK(h.body.empty());
    auto g = exchange(stream, buf, http::verb::get, "/api/incidents.csv?state=closed&limit=3", "c-secret");
    CHECK(g.status == 200);
    CHECK(parse_csv(g.body).size() == 4);
    auto j = exchange(stream, buf, http::verb::get, "/api/incidents?state=all&limit=2", "c-secret");
    CHECK(j.status == 200);
    CHECK(json::parse(j.body).as_array().size() == 2);
  }
  CHECK(srv.stop() == 0);
}
