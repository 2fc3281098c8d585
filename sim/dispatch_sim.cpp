// dispatch-sim: drives a running dispatchd over real WebSockets, as a fleet of units
// behind gateways, a report source, insurers and a dispatcher, and measures it.
//
//   dispatch-sim make-fleet --units N --seed S --out fleet.json [--tokens-out tokens.json]
//   dispatch-sim run --url ws://HOST:PORT --tokens tokens.json --fleet fleet.json [...]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <csignal>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <unordered_map>

#include "geo/geo.hpp"
#include "geo/zones.hpp"
#include "sim/fleet.hpp"

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using namespace dispatch;

namespace {

using Millis = std::int64_t;
Millis now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
std::int64_t mono_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ------------------------------------------------------------------------------------
// A WebSocket client connection: async read loop, one write in flight, a send queue.

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  using Handler = std::function<void(const json::object&)>;
  Conn(asio::io_context& ioc, std::string name) : ws_(ioc), name_(std::move(name)) {}

  void connect(const std::string& host, const std::string& port, const std::string& path,
               const std::string& token) {
    tcp::resolver resolver(ws_.get_executor());
    auto results = resolver.resolve(host, port);
    beast::get_lowest_layer(ws_).connect(results);
    beast::get_lowest_layer(ws_).socket().set_option(tcp::no_delay(true));
    ws_.set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
      req.set(http::field::authorization, "Bearer " + token);
    }));
    ws_.read_message_max(64 << 20);
    ws_.handshake(host + ":" + port, path);
    open_ = true;
  }
  void start(Handler h) {
    handler_ = std::move(h);
    read();
  }
  void send(std::string text) {
    if (!open_) return;
    queued_bytes_ += text.size();
    q_.push_back(std::move(text));
    if (!writing_) write();
  }
  bool open() const { return open_; }
  std::size_t queued_bytes() const { return queued_bytes_; }
  void close() {
    if (!open_) return;
    open_ = false;
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ec);
  }

 private:
  void read() {
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) {
        if (self->open_) std::cerr << "dispatch-sim: " << self->name_ << " closed: " << ec.message() << "\n";
        self->open_ = false;
        return;
      }
      boost::system::error_code jec;
      auto v = json::parse(beast::buffers_to_string(self->buf_.data()), jec);
      self->buf_.consume(self->buf_.size());
      if (!jec) {
        if (v.is_array()) {
          for (auto& e : v.get_array())
            if (e.is_object()) self->handler_(e.get_object());
        } else if (v.is_object()) {
          self->handler_(v.get_object());
        }
      }
      self->read();
    });
  }
  void write() {
    writing_ = true;
    ws_.text(true);
    ws_.async_write(asio::buffer(q_.front()), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->queued_bytes_ -= self->q_.front().size();
      self->q_.pop_front();
      self->writing_ = false;
      if (ec) {
        self->open_ = false;
        return;
      }
      if (!self->q_.empty()) self->write();
    });
  }

  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buf_;
  std::deque<std::string> q_;
  std::size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool open_ = false;
  std::string name_;
  Handler handler_;
};

std::string http_get(const std::string& host, const std::string& port, const std::string& target) {
  asio::io_context ioc;
  beast::tcp_stream s(ioc);
  tcp::resolver r(ioc);
  s.connect(r.resolve(host, port));
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, host);
  http::write(s, req);
  beast::flat_buffer b;
  http::response<http::string_body> res;
  http::read(s, b, res);
  return res.body();
}

double metric(const std::string& text, const std::string& name) {
  auto p = text.find("\n" + name + " ");
  if (p == std::string::npos) return 0;
  return std::stod(text.substr(p + name.size() + 2));
}

// ------------------------------------------------------------------------------------

struct Options {
  std::string url, tokens, fleet, json_out;
  std::size_t units = 0;
  double rate = 1.0, reports_per_s = 1.0, duration = 10;
  std::uint64_t seed = 1;
  std::size_t gateways = 2, batch = 500;
  bool demo = false;
};

enum class Status { available, assigned, en_route, on_scene };

struct Unit {
  sim::SimUnit def;
  geo::LatLon pos;
  geo::LatLon sent;        // the last position sent to the server
  double heading = 0;      // degrees
  double speed_mps = 0;
  Millis stop_until = 0;
  Status status = Status::available;
  std::string assignment, incident;
  geo::LatLon target;
  Millis next_action = 0;  // when the crew does its next step
  bool will_decline = false;
  bool arrived = false;
  Millis last_assign = 0;  // when an assign or cancel about it last came
  std::vector<Millis> assign_times;  // every assign to it, for the oracle's verdicts
  std::size_t gateway = 0;
};

struct ReportInfo {
  std::int64_t sent_us = 0;
  Millis sent_ms = 0;
  std::string id, severity;
  bool remote = false;
  geo::LatLon at;
  std::vector<std::pair<std::string, std::string>> vehicles;  // plate, insurer
  // The oracle, at send time: the nearest available moto by the positions sent.
  bool checked = false;
  std::string best;
  double best_d = 0;
  std::map<std::string, double> dist;  // a few candidates' distances
};

constexpr const char* insurers[] = {"PICC", "平安", "太平洋", "国寿财险", "大地", "阳光", "太平", "华安",
                                    "天安", "永安", "安盛天平", "中华联合"};
constexpr const char* plate_letters = "ABCDFGH";

class Sim {
 public:
  Sim(Options o, std::vector<sim::SimUnit> fleet, json::value tokens)
      : opt_(std::move(o)), rng_(opt_.seed) {
    // ws://host:port
    std::string rest = opt_.url.substr(opt_.url.find("//") + 2);
    if (auto slash = rest.find('/'); slash != std::string::npos) rest = rest.substr(0, slash);
    host_ = rest.substr(0, rest.rfind(':'));
    port_ = rest.substr(rest.rfind(':') + 1);
    for (auto& t : tokens.at("tokens").as_array()) {
      const auto& o2 = t.as_object();
      const std::string role(o2.at("role").as_string()), token(o2.at("token").as_string());
      if (role == "gateway" && gateway_token_.empty()) {
        bool all = false;
        if (auto* us = o2.if_contains("units"))
          for (auto& u : us->as_array()) all |= u.as_string() == "*";
        if (all) gateway_token_ = token;
      } else if (role == "reporter" && reporter_token_.empty()) {
        reporter_token_ = token;
      } else if (role == "console" && console_token_.empty()) {
        console_token_ = token;
      } else if (role == "insurer") {
        insurer_tokens_.emplace_back(std::string(o2.at("insurer").as_string()), token);
      }
    }
    if (gateway_token_.empty()) throw std::runtime_error("the tokens file has no gateway token for \"*\"");
    if (reporter_token_.empty()) throw std::runtime_error("the tokens file has no reporter token");
    if (opt_.units && opt_.units < fleet.size()) fleet.resize(opt_.units);
    std::uniform_real_distribution<double> deg(0, 360);
    for (std::size_t i = 0; i < fleet.size(); ++i) {
      Unit u;
      u.def = std::move(fleet[i]);
      u.pos = u.sent = u.def.start;
      u.heading = deg(rng_);
      u.gateway = i % std::max<std::size_t>(1, opt_.gateways);
      index_.emplace(u.def.id, units_.size());
      units_.push_back(std::move(u));
    }
  }

  int run() {
    const auto t0 = std::chrono::steady_clock::now();
    start_metrics_ = fetch_metrics();
    for (std::size_t g = 0; g < std::max<std::size_t>(1, opt_.gateways); ++g) {
      auto c = std::make_shared<Conn>(ioc_, fmt::format("gateway {}", g));
      c->connect(host_, port_, "/ws/unit", gateway_token_);
      c->start([this](const json::object& m) { on_unit_message(m); });
      gateways_.push_back(c);
    }
    reporter_ = std::make_shared<Conn>(ioc_, "reporter");
    reporter_->connect(host_, port_, "/ws/report", reporter_token_);
    reporter_->start([this](const json::object& m) { on_report_message(m); });
    if (!console_token_.empty()) {
      console_ = std::make_shared<Conn>(ioc_, "console");
      console_->connect(host_, port_, "/ws/console", console_token_);
      console_->start([this](const json::object& m) { on_console_message(m); });
    }
    for (auto& [name, token] : insurer_tokens_) {
      auto c = std::make_shared<Conn>(ioc_, "insurer " + name);
      c->connect(host_, port_, "/ws/insurer", token);
      c->start([this, c](const json::object& m) { on_insurer_message(c, m); });
      insurers_.push_back(c);
    }
    started_ms_ = now_ms();
    last_tick_ms_ = started_ms_;
    // Reports start once the server has had every unit's first position (a warm-up).
    schedule_next_report(started_ms_ + (opt_.demo ? 5000 : 2000));
    tick();
    signals_.async_wait([this](beast::error_code ec, int) {
      if (!ec) stopping_ = true;
    });
    progress();
    ioc_.run();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return summary(secs);
  }

 private:
  // ---- time steps --------------------------------------------------------------------

  void tick() {
    const Millis now = now_ms();
    const bool ending = stopping_ || (opt_.duration > 0 && now - started_ms_ >= static_cast<Millis>(opt_.duration * 1000));
    if (ending) {
      if (!drain_until_) drain_until_ = now + 2000;  // wait for answers in flight
      if (now >= drain_until_ || pending_reports() == 0) {
        for (auto& c : gateways_) c->close();
        reporter_->close();
        if (console_) console_->close();
        for (auto& c : insurers_) c->close();
        timer_.cancel();
        progress_timer_.cancel();
        beast::error_code ignored;
        signals_.cancel(ignored);
        return;
      }
    } else {
      const double dt = static_cast<double>(now - last_tick_ms_) / 1000.0;
      if (now - last_position_ms_ >= static_cast<Millis>(1000.0 / opt_.rate)) {
        move_and_send(now, static_cast<double>(now - last_position_ms_) / 1000.0);
        last_position_ms_ = now;
      }
      (void)dt;
      crews(now);
      reports(now);
      console_duties(now);
    }
    last_tick_ms_ = now;
    timer_.expires_after(std::chrono::milliseconds(5));
    timer_.async_wait([this](beast::error_code ec) {
      if (!ec) tick();
    });
  }

  std::size_t pending_reports() const {
    std::size_t n = 0;
    for (const auto& [id, r] : reports_)
      if (!accepted_.count(id)) ++n;
    return n;
  }

  void move_and_send(Millis now, double dt) {
    if (dt > 5) dt = 5;
    std::vector<std::string> frames(gateways_.size());
    std::vector<std::size_t> counts(gateways_.size());
    std::uniform_real_distribution<double> turn(-20, 20), u01(0, 1);
    for (auto& u : units_) {
      move(u, now, dt, turn, u01);
      auto& f = frames[u.gateway];
      f += f.empty() ? '[' : ',';
      fmt::format_to(std::back_inserter(f),
                     R"({{"type":"position","unit":"{}","lat":{:.6f},"lon":{:.6f},"ts":{},"speed_kmh":{:.1f},"heading":{:.0f}}})",
                     u.def.id, u.pos.lat, u.pos.lon, now, u.speed_mps * 3.6, u.heading);
      u.sent = u.pos;
      ++positions_sent_;
      if (++counts[u.gateway] >= opt_.batch || f.size() > 56 * 1024) {  // frames stay under 64 KiB
        f += ']';
        gateways_[u.gateway]->send(std::move(f));
        f.clear();
        counts[u.gateway] = 0;
      }
    }
    for (std::size_t g = 0; g < frames.size(); ++g)
      if (!frames[g].empty()) {
        frames[g] += ']';
        gateways_[g]->send(std::move(frames[g]));
      }
  }

  template <class Turn, class U01>
  void move(Unit& u, Millis now, double dt, Turn& turn, U01& u01) {
    const bool heli = u.def.kind == "heli";
    if (u.status == Status::en_route || (u.status == Status::assigned && !opt_.demo)) {
      // Straight to the target at working speed.
      u.speed_mps = heli ? 200 / 3.6 : (u.def.kind == "car" ? 45 / 3.6 : 40 / 3.6);
      const double d = geo::distance_m(u.pos, u.target);
      const double step = std::min(d, u.speed_mps * dt);
      if (d > 1) {
        const double f = step / d;
        u.pos.lat += (u.target.lat - u.pos.lat) * f;
        u.pos.lon += (u.target.lon - u.pos.lon) * f;
        u.heading = std::fmod(geo::rad2deg(std::atan2(u.target.lon - u.pos.lon, u.target.lat - u.pos.lat)) + 360, 360);
      }
      return;
    }
    if (heli || u.status != Status::available) {
      u.speed_mps = 0;
      return;
    }
    // Patrol: drift, stop now and then, stay near home.
    if (now < u.stop_until) {
      u.speed_mps = 0;
      return;
    }
    if (u01(rng_) < 0.01 * dt) {
      u.stop_until = now + static_cast<Millis>(10000 + u01(rng_) * 50000);
      u.speed_mps = 0;
      return;
    }
    u.speed_mps = (u.def.kind == "car" ? 35 : 28) / 3.6 * (0.6 + 0.8 * u01(rng_));
    u.heading = std::fmod(u.heading + turn(rng_) * dt + 360, 360);
    if (geo::distance_m(u.pos, u.def.start) > 4000)  // head home
      u.heading = std::fmod(geo::rad2deg(std::atan2(u.def.start.lon - u.pos.lon, u.def.start.lat - u.pos.lat)) + 360, 360);
    const double d = u.speed_mps * dt;
    u.pos.lat += d * std::cos(geo::deg2rad(u.heading)) / 111195.0;
    u.pos.lon += d * std::sin(geo::deg2rad(u.heading)) / (111195.0 * std::cos(geo::deg2rad(u.pos.lat)));
  }

  // Crews: ack or decline after a delay, arrive, clear.
  void crews(Millis now) {
    std::uniform_real_distribution<double> u01(0, 1);
    for (auto& u : units_) {
      if (u.status == Status::available || now < u.next_action) continue;
      auto& gw = *gateways_[u.gateway];
      if (u.status == Status::assigned) {
        if (u.will_decline) {
          gw.send(fmt::format(R"({{"type":"decline","assignment":"{}","reason":"sim: busy"}})", u.assignment));
          ++declines_;
          u.status = Status::available;
          u.assignment.clear();
          continue;
        }
        gw.send(fmt::format(R"({{"type":"ack","assignment":"{}"}})", u.assignment));
        u.status = Status::en_route;
        u.next_action = now + 500;
      } else if (u.status == Status::en_route) {
        if (geo::distance_m(u.pos, u.target) < 30 || (!opt_.demo && now - u.last_assign > 3000)) {
          gw.send(fmt::format(R"({{"type":"arrived","assignment":"{}"}})", u.assignment));
          u.status = Status::on_scene;
          u.next_action = now + static_cast<Millis>(opt_.demo ? 20000 + u01(rng_) * 60000 : 500 + u01(rng_) * 1500);
        } else {
          u.next_action = now + 500;
        }
      } else if (u.status == Status::on_scene) {
        gw.send(fmt::format(R"({{"type":"cleared","assignment":"{}"}})", u.assignment));
        u.status = Status::available;
        u.assignment.clear();
        u.incident.clear();
        ++cleared_;
      }
    }
  }

  void schedule_next_report(Millis from) {
    std::exponential_distribution<double> gap(opt_.reports_per_s > 0 ? opt_.reports_per_s : 1e-9);
    next_report_ms_ = from + static_cast<Millis>(gap(rng_) * 1000.0);
  }

  void reports(Millis now) {
    if (opt_.reports_per_s <= 0 || units_.empty()) return;
    std::string frame;
    int n = 0;
    while (next_report_ms_ <= now) {
      frame += frame.empty() ? '[' : ',';
      frame += make_report(now);
      ++n;
      schedule_next_report(next_report_ms_);
    }
    if (n) reporter_->send(frame + "]");
  }

  std::string make_report(Millis now) {
    std::uniform_real_distribution<double> u01(0, 1);
    ReportInfo r;
    r.id = fmt::format("sim-{}-{}", opt_.seed, ++report_no_);
    const double s = u01(rng_);
    r.severity = s < 0.80 ? "minor" : s < 0.97 ? "injury" : "critical";
    r.remote = r.severity == "minor" && u01(rng_) < 0.6;
    // Near a random unit (accidents happen where the patrols are), up to 3 km away.
    const auto& near = units_[static_cast<std::size_t>(u01(rng_) * static_cast<double>(units_.size())) % units_.size()];
    const double ang = u01(rng_) * 2 * std::numbers::pi, dist = u01(rng_) * 3000;
    r.at = {near.pos.lat + dist * std::cos(ang) / 111195.0,
            near.pos.lon + dist * std::sin(ang) / (111195.0 * std::cos(geo::deg2rad(near.pos.lat)))};
    const int nveh = r.severity == "critical" ? 1 : 1 + static_cast<int>(u01(rng_) * 2);
    for (int i = 0; i < nveh; ++i) {
      std::string plate = fmt::format("渝{}{}", plate_letters[static_cast<int>(u01(rng_) * 7)], 10000 + static_cast<int>(u01(rng_) * 89999));
      r.vehicles.emplace_back(plate, insurers[static_cast<int>(u01(rng_) * std::size(insurers)) % std::size(insurers)]);
    }
    r.sent_us = mono_us();
    r.sent_ms = now;
    if (!r.remote && checks_this_second(now)) oracle(r, now);
    json::array veh;
    for (auto& [p, i] : r.vehicles) veh.push_back(json::object{{"plate", p}, {"insurer", i}});
    json::object o{{"type", "report"}, {"id", r.id}, {"lat", r.at.lat}, {"lon", r.at.lon}, {"ts", now},
                   {"severity", r.severity}, {"injured", r.severity == "minor" ? 0 : 1},
                   {"drivable", r.remote}, {"parties_agree", r.remote}, {"vehicles", std::move(veh)}};
    ++reports_sent_;
    std::string text = json::serialize(o);
    reports_.emplace(r.id, std::move(r));
    return text;
  }

  bool checks_this_second(Millis now) {
    if (now / 1000 != check_second_) {
      check_second_ = now / 1000;
      checks_in_second_ = 0;
    }
    return ++checks_in_second_ <= 50;  // the oracle's brute force is bounded in cost
  }

  void oracle(ReportInfo& r, Millis now) {
    std::vector<std::pair<double, std::string>> near;
    for (const auto& u : units_) {
      if (u.def.kind != "moto" || u.status != Status::available) continue;
      near.emplace_back(geo::distance_m(u.sent, r.at), u.def.id);
    }
    if (near.empty()) return;
    std::partial_sort(near.begin(), near.begin() + std::min<std::size_t>(5, near.size()), near.end());
    r.checked = true;
    r.best = near[0].second;
    r.best_d = near[0].first;
    for (std::size_t i = 0; i < std::min<std::size_t>(5, near.size()); ++i) r.dist[near[i].second] = near[i].first;
    (void)now;
  }

  void console_duties(Millis now) {
    // The dispatcher settles remote incidents: liability after a little while.
    while (!remote_queue_.empty() && remote_queue_.front().first <= now) {
      const auto [when, incident] = remote_queue_.front();
      remote_queue_.pop_front();
      auto it = remote_plate_.find(incident);
      if (console_ && it != remote_plate_.end())
        console_->send(fmt::format(R"({{"type":"liability","incident":"{}","at_fault":"{}","note":"sim"}})", incident, it->second));
    }
    while (!pay_queue_.empty() && pay_queue_.front().first <= now) {
      auto [when, what] = pay_queue_.front();
      pay_queue_.pop_front();
      if (what.first->open())
        what.first->send(fmt::format(R"({{"type":"claim_paid","claim":"{}","amount":{}}})", what.second, 1000 + report_no_ % 5000));
    }
  }

  // ---- messages ----------------------------------------------------------------------

  void on_unit_message(const json::object& m) {
    const std::string type(m.at("type").as_string());
    if (type == "error") return on_error(m);
    auto unit_it = m.if_contains("unit") ? index_.find(std::string(m.at("unit").as_string())) : index_.end();
    if (unit_it == index_.end()) return;
    Unit& u = units_[unit_it->second];
    const Millis now = now_ms();
    std::uniform_real_distribution<double> u01(0, 1);
    if (type == "assign") {
      ++assigns_;
      const std::string incident(m.at("incident").as_string());
      u.last_assign = now;
      u.assign_times.push_back(now);
      if (u.status != Status::available) {
        // The server sent a unit the simulator still thinks busy: report it.
        ++errors_;
        if (error_samples_.size() < 10)
          error_samples_.push_back(fmt::format("assign {} to {} while it is busy with {}", incident, u.def.id, u.assignment));
      }
      u.status = Status::assigned;
      u.assignment = std::string(m.at("assignment").as_string());
      u.incident = incident;
      u.target = {m.at("lat").to_number<double>(), m.at("lon").to_number<double>()};
      u.will_decline = u.def.kind == "moto" && u01(rng_) < 0.05;
      u.next_action = now + static_cast<Millis>(opt_.demo ? 2000 + u01(rng_) * 6000 : 50 + u01(rng_) * 300);
      if (u.def.kind == "moto") first_moto_assign(incident, u);
    } else if (type == "cancel") {
      u.last_assign = now;
      if (u.assignment == std::string(m.at("assignment").as_string())) {
        u.status = Status::available;
        u.assignment.clear();
        u.incident.clear();
      }
      ++cancels_;
    }
  }

  void first_moto_assign(const std::string& incident, const Unit& u) {
    if (!first_assign_.emplace(incident, std::make_pair(mono_us(), u.def.id)).second) return;
    if (auto it = incident_report_.find(incident); it != incident_report_.end()) resolve(it->second, incident);
  }

  void on_report_message(const json::object& m) {
    const std::string type(m.at("type").as_string());
    if (type == "error") return on_error(m);
    if (type != "accepted") return;
    const std::string id(m.at("id").as_string()), incident(m.at("incident").as_string());
    auto it = reports_.find(id);
    if (it == reports_.end() || !accepted_.insert(id).second) return;
    accepted_lat_.add(mono_us() - it->second.sent_us);
    incident_report_[incident] = id;
    if (it->second.remote) {
      remote_plate_[incident] = it->second.vehicles.front().first;
      std::uniform_real_distribution<double> u01(0, 1);
      remote_queue_.emplace_back(now_ms() + static_cast<Millis>(opt_.demo ? 10000 + u01(rng_) * 60000 : 200 + u01(rng_) * 800),
                                 incident);
    }
    if (first_assign_.count(incident)) resolve(id, incident);
  }

  void resolve(const std::string& report_id, const std::string& incident) {
    auto rit = reports_.find(report_id);
    if (rit == reports_.end()) return;
    ReportInfo& r = rit->second;
    const auto& [at_us, unit] = first_assign_.at(incident);
    assign_lat_.add(at_us - r.sent_us);
    if (!r.checked) return;
    ++checked_;
    if (unit == r.best) return;
    const Unit& got = units_[index_.at(unit)];
    const double got_d = geo::distance_m(got.sent, r.at);
    // Positions moved while the report was in flight: a little slack.
    if (got_d <= r.best_d + 60) return;
    // Perhaps the oracle's favourite was busy on the server's side: assigned elsewhere
    // just before, or by an assign still on its way. Judged at the end of the run.
    suspects_.push_back(Suspect{report_id, incident, unit, got_d, r.best, r.best_d, r.sent_ms});
  }

  struct Suspect {
    std::string report, incident, got;
    double got_d;
    std::string best;
    double best_d;
    Millis sent_ms;
  };

  void judge_suspects() {
    for (const auto& s : suspects_) {
      const Unit& best = units_[index_.at(s.best)];
      const bool busy = std::any_of(best.assign_times.begin(), best.assign_times.end(), [&](Millis t) {
        return t >= s.sent_ms - 5000 && t <= s.sent_ms + 10000;
      });
      if (busy) continue;
      ++mismatches_;
      if (mismatch_list_.size() < 20)
        mismatch_list_.push_back(fmt::format("{} ({}): got {} at {:.0f} m, nearest {} at {:.0f} m", s.report, s.incident,
                                             s.got, s.got_d, s.best, s.best_d));
    }
  }

  void on_console_message(const json::object& m) {
    const std::string type(m.at("type").as_string());
    if (type == "error") on_error(m);
  }

  void on_insurer_message(const std::shared_ptr<Conn>& c, const json::object& m) {
    const std::string type(m.at("type").as_string());
    if (type == "error") return on_error(m);
    if (type != "claim") return;
    ++claims_;
    std::uniform_real_distribution<double> u01(0, 1);
    pay_queue_.emplace_back(now_ms() + static_cast<Millis>(opt_.demo ? 30000 + u01(rng_) * 240000 : 100 + u01(rng_) * 400),
                            std::make_pair(c, std::string(m.at("claim").as_string())));
    std::sort(pay_queue_.begin(), pay_queue_.end(), [](auto& a, auto& b) { return a.first < b.first; });
  }

  void on_error(const json::object& m) {
    ++errors_;
    if (error_samples_.size() < 10) error_samples_.push_back(json::serialize(m));
  }

  // ---- reporting ----------------------------------------------------------------------

  void progress() {
    progress_timer_.expires_after(std::chrono::seconds(1));
    progress_timer_.async_wait([this](beast::error_code ec) {
      if (ec) return;
      const auto secs = static_cast<double>(now_ms() - started_ms_) / 1000.0;
      std::cerr << fmt::format(
          "\r[{:6.1f}s] positions {} ({:.0f}/s)  reports {}  accepted {}  assigns {}  assign p99 {:.1f} ms  mismatches {}  errors {}   ",
          secs, positions_sent_, static_cast<double>(positions_sent_) / std::max(secs, 0.001), reports_sent_,
          accepted_.size(), assigns_, static_cast<double>(assign_lat_.percentile(0.99)) / 1000.0, mismatches_, errors_);
      if (opt_.demo) std::cerr << '\n';
      progress();
    });
  }

  std::string fetch_metrics() {
    try {
      return http_get(host_, port_, "/metrics");
    } catch (const std::exception&) {
      return {};
    }
  }

  int summary(double secs) {
    std::cerr << "\n";
    judge_suspects();
    const std::string end_metrics = fetch_metrics();
    const double taken = metric(end_metrics, "dispatch_positions_accepted_total") -
                         metric(start_metrics_, "dispatch_positions_accepted_total");
    const double active = std::max(0.001, std::min(secs, opt_.duration > 0 ? opt_.duration : secs));
    auto ms = [](std::int64_t us) { return static_cast<double>(us) / 1000.0; };
    json::object s{{"duration_s", active},
                   {"units", units_.size()},
                   {"gateways", gateways_.size()},
                   {"positions_sent", positions_sent_},
                   {"positions_taken", taken},
                   {"positions_per_s", taken / active},
                   {"reports", reports_sent_},
                   {"reports_per_s", static_cast<double>(reports_sent_) / active},
                   {"accepted", accepted_.size()},
                   {"assigns", assigns_},
                   {"declines", declines_},
                   {"cancels", cancels_},
                   {"cleared", cleared_},
                   {"claims", claims_},
                   {"accepted_p50_ms", ms(accepted_lat_.percentile(0.5))},
                   {"accepted_p90_ms", ms(accepted_lat_.percentile(0.9))},
                   {"accepted_p99_ms", ms(accepted_lat_.percentile(0.99))},
                   {"accepted_max_ms", ms(accepted_lat_.max())},
                   {"assign_count", assign_lat_.count()},
                   {"assign_p50_ms", ms(assign_lat_.percentile(0.5))},
                   {"assign_p90_ms", ms(assign_lat_.percentile(0.9))},
                   {"assign_p99_ms", ms(assign_lat_.percentile(0.99))},
                   {"assign_max_ms", ms(assign_lat_.max())},
                   {"checked", checked_},
                   {"mismatches", mismatches_},
                   {"errors", errors_}};
    json::array ml, el;
    for (auto& m : mismatch_list_) ml.push_back(json::string(m));
    for (auto& e : error_samples_) el.push_back(json::string(e));
    s["mismatch_list"] = std::move(ml);
    s["error_samples"] = std::move(el);
    const std::string text = json::serialize(s);
    std::cout << text << std::endl;
    if (!opt_.json_out.empty()) std::ofstream(opt_.json_out) << text << '\n';
    return 0;
  }

  Options opt_;
  std::mt19937_64 rng_;
  asio::io_context ioc_;
  asio::steady_timer timer_{ioc_};
  asio::steady_timer progress_timer_{ioc_};
  asio::signal_set signals_{ioc_, SIGINT, SIGTERM};
  std::string host_, port_, gateway_token_, reporter_token_, console_token_;
  std::vector<std::pair<std::string, std::string>> insurer_tokens_;
  std::vector<std::shared_ptr<Conn>> gateways_, insurers_;
  std::shared_ptr<Conn> reporter_, console_;
  std::vector<Unit> units_;
  std::unordered_map<std::string, std::size_t> index_;
  std::unordered_map<std::string, ReportInfo> reports_;
  std::set<std::string> accepted_;
  std::unordered_map<std::string, std::string> incident_report_;
  std::unordered_map<std::string, std::pair<std::int64_t, std::string>> first_assign_;
  std::unordered_map<std::string, std::string> remote_plate_;
  std::deque<std::pair<Millis, std::string>> remote_queue_;
  std::deque<std::pair<Millis, std::pair<std::shared_ptr<Conn>, std::string>>> pay_queue_;
  sim::Histogram accepted_lat_, assign_lat_;
  std::string start_metrics_;
  Millis started_ms_ = 0, last_tick_ms_ = 0, last_position_ms_ = 0, next_report_ms_ = 0, drain_until_ = 0;
  Millis check_second_ = 0;
  int checks_in_second_ = 0;
  bool stopping_ = false;
  std::uint64_t positions_sent_ = 0, reports_sent_ = 0, report_no_ = 0, assigns_ = 0, declines_ = 0, cancels_ = 0,
                cleared_ = 0, claims_ = 0, checked_ = 0, mismatches_ = 0, errors_ = 0;
  std::vector<std::string> mismatch_list_, error_samples_;
  std::vector<Suspect> suspects_;
};

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"dispatch-sim: load, demo and correctness harness for dispatchd"};
  app.require_subcommand(1);

  auto* mk = app.add_subcommand("make-fleet", "write a fleet file (and a tokens file) for dispatchd --fleet");
  std::size_t n = 300;
  std::uint64_t seed = 1;
  std::string out = "fleet.json", tokens_out;
  std::string zones = std::string(DISPATCH_SOURCE_DIR) + "/assets/geo/chongqing_districts_gcj02.geojson";
  mk->add_option("--units", n, "how many units")->capture_default_str();
  mk->add_option("--seed", seed, "random seed")->capture_default_str();
  mk->add_option("--out", out, "fleet file to write")->capture_default_str();
  mk->add_option("--tokens-out", tokens_out, "also write a tokens file with every role");
  mk->add_option("--zones", zones, "district boundaries (GCJ-02 GeoJSON)")->capture_default_str();

  auto* run = app.add_subcommand("run", "drive a running dispatchd");
  Options o;
  run->add_option("--url", o.url, "ws://HOST:PORT of dispatchd")->required();
  run->add_option("--tokens", o.tokens, "tokens file (gateway \"*\", reporter; console, insurers optional)")->required();
  run->add_option("--fleet", o.fleet, "fleet file the server was started with")->required();
  run->add_option("--units", o.units, "use only the first N units (0: all)");
  run->add_option("--rate", o.rate, "positions per unit per second")->capture_default_str();
  run->add_option("--reports-per-s", o.reports_per_s, "accident reports per second (Poisson)")->capture_default_str();
  run->add_option("--duration", o.duration, "seconds to run (0: until stopped)")->capture_default_str();
  run->add_option("--seed", o.seed, "random seed")->capture_default_str();
  run->add_option("--gateways", o.gateways, "gateway connections the units are spread over")->capture_default_str();
  run->add_option("--batch", o.batch, "positions per frame")->capture_default_str();
  run->add_option("--json", o.json_out, "write the final summary here");
  run->add_flag("--demo", o.demo, "gentle: 1 Hz, a report every ~20 s, crews at human pace, runs until stopped");
  CLI11_PARSE(app, argc, argv);

  try {
    if (*mk) {
      geo::ZoneOptions zo;
      zo.gcj02 = true;
      auto z = geo::Zones::load(zones, zo);
      auto fleet = sim::make_fleet(z, n, seed);
      std::ofstream(out) << sim::fleet_json(fleet);
      if (!tokens_out.empty()) std::ofstream(tokens_out) << sim::tokens_json();
      std::cerr << "dispatch-sim: wrote " << fleet.size() << " units to " << out << "\n";
      return 0;
    }
    if (o.demo) {
      if (!run->count("--reports-per-s")) o.reports_per_s = 0.05;
      if (!run->count("--duration")) o.duration = 0;
      if (!run->count("--gateways")) o.gateways = 1;
    }
    auto fleet = sim::parse_fleet_json(read_file(o.fleet));
    auto tokens = json::parse(read_file(o.tokens));
    Sim sim(o, std::move(fleet), std::move(tokens));
    return sim.run();
  } catch (const std::exception& e) {
    std::cerr << "dispatch-sim: " << e.what() << "\n";
    return 1;
  }
}
