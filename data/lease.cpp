#include "data/lease.hpp"

#include "data/pg.hpp"

namespace dispatch::data {

struct Lease::Impl {
  Impl(std::string url, std::string h, std::chrono::milliseconds l)
      : conn(std::move(url), "lease"), holder(std::move(h)), length_ms(l.count()) {}
  pg::Conn conn;
  std::string holder;
  std::int64_t length_ms;
};

Lease::Lease(std::string url, std::string holder, std::chrono::milliseconds length)
    : impl_(std::make_unique<Impl>(std::move(url), std::move(holder), length)) {}

Lease::~Lease() = default;

namespace {
// The expiry is reckoned from the database's clock when the statement runs
// (clock_timestamp()), the one clock all servers share.
constexpr const char* take_sql =
    "UPDATE lease SET epoch = epoch + 1, holder = $1, "
    "expires_at = clock_timestamp() + $2 * interval '1 millisecond' "
    "WHERE id = 1 AND expires_at < clock_timestamp() RETURNING epoch";
constexpr const char* renew_sql =
    "UPDATE lease SET expires_at = clock_timestamp() + $2 * interval '1 millisecond' "
    "WHERE id = 1 AND epoch = $1 RETURNING epoch";
constexpr const char* release_sql = "UPDATE lease SET expires_at = '-infinity' WHERE id = 1 AND epoch = $1";
}  // namespace

Lease::Outcome Lease::take(std::int64_t& epoch) {
  auto& m = *impl_;
  if (!m.conn.connect(error_)) return Outcome::unreachable;
  const auto r = m.conn.exec_prepared("take", take_sql, params(m.holder, m.length_ms));
  if (!r.ok()) {
    error_ = r.error();
    if (!m.conn.connected()) m.conn.reset();
    return Outcome::unreachable;
  }
  if (r.rows() != 1) return Outcome::held;
  epoch = pg::ResultRow(r, 0).int64(0);
  return Outcome::ok;
}

Lease::Outcome Lease::renew(std::int64_t epoch) {
  auto& m = *impl_;
  if (!m.conn.connect(error_)) return Outcome::unreachable;
  const auto r = m.conn.exec_prepared("renew", renew_sql, params(epoch, m.length_ms));
  if (!r.ok()) {
    error_ = r.error();
    if (!m.conn.connected()) m.conn.reset();
    return Outcome::unreachable;
  }
  return r.rows() == 1 ? Outcome::ok : Outcome::held;
}

bool Lease::lapsed() {
  auto& m = *impl_;
  if (!m.conn.connect(error_)) return false;
  const auto r = m.conn.exec_prepared("lapsed", "SELECT expires_at < clock_timestamp() FROM lease WHERE id = 1", {});
  if (!r.ok()) {
    if (!m.conn.connected()) m.conn.reset();
    return false;
  }
  return r.rows() == 1 && pg::ResultRow(r, 0).text(0) == "t";
}

void Lease::release(std::int64_t epoch) {
  auto& m = *impl_;
  if (!m.conn.connect(error_)) return;
  m.conn.exec_prepared("release", release_sql, params(epoch));
}

}  // namespace dispatch::data
