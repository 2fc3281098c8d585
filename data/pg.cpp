#include "data/pg.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

namespace dispatch::data::pg {

std::int64_t Result::changes() const {
  if (!r_) return 0;
  const char* n = PQcmdTuples(r_);
  return n && *n ? std::strtoll(n, nullptr, 10) : 0;
}

std::string Result::sqlstate() const {
  const char* s = r_ ? PQresultErrorField(r_, PG_DIAG_SQLSTATE) : nullptr;
  return s ? s : "";
}

std::string Result::error() const {
  if (!r_) return "no result (connection lost)";
  std::string e = PQresultErrorMessage(r_);
  while (!e.empty() && (e.back() == '\n' || e.back() == ' ')) e.pop_back();
  return e;
}

std::int64_t ResultRow::int64(int c) const {
  if (PQgetisnull(r_, row_, c)) return 0;
  return std::strtoll(PQgetvalue(r_, row_, c), nullptr, 10);
}

double ResultRow::real(int c) const {
  if (PQgetisnull(r_, row_, c)) return 0;
  return std::strtod(PQgetvalue(r_, row_, c), nullptr);
}

std::string ResultRow::text(int c) const {
  return std::string(PQgetvalue(r_, row_, c), static_cast<std::size_t>(PQgetlength(r_, row_, c)));
}

TextParams::TextParams(const Params& p) {
  text.reserve(p.size());
  for (const auto& v : p) {
    if (std::holds_alternative<std::monostate>(v)) text.emplace_back();
    else if (const auto* n = std::get_if<std::int64_t>(&v)) text.emplace_back(std::to_string(*n));
    else if (const auto* d = std::get_if<double>(&v)) text.emplace_back(fmt::format("{}", *d));  // shortest exact
    else text.emplace_back(std::get<std::string>(v));
  }
  values.reserve(text.size());
  for (const auto& t : text) values.push_back(t ? t->c_str() : nullptr);
}

std::string dollar_params(const std::string& sql) {
  std::string out = sql;
  std::replace(out.begin(), out.end(), '?', '$');
  return out;
}

std::string redact(const std::string& url) {
  // scheme://user:password@host... -> scheme://user:***@host...
  const auto scheme = url.find("://");
  const auto at = url.find('@');
  if (scheme == std::string::npos || at == std::string::npos) return url;
  const auto colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

bool Conn::connect(std::string& error) {
  if (connected()) return true;
  reset();
  c_ = PQconnectdb(url_.c_str());
  if (!c_ || PQstatus(c_) != CONNECTION_OK) {
    error = fmt::format("cannot connect to {} ({} connection): {}", redact(url_), what_, this->error());
    reset();
    return false;
  }
  ++generation_;
  prepared_.clear();
  // Quiet notices (CREATE ... IF NOT EXISTS); UTF-8 text; never wait long on a lock that a
  // paused server holds, and let the server end a session idle inside a transaction
  // (a paused or cut-off former active) so that its locks go.
  PQsetNoticeProcessor(c_, [](void*, const char*) {}, nullptr);
  Result r(PQexec(c_, "SET client_encoding = 'UTF8'; SET idle_in_transaction_session_timeout = '2s'"));
  if (!r.ok()) {
    error = r.error();
    reset();
    return false;
  }
  return true;
}

void Conn::connect_or_throw() {
  std::string error;
  if (!connect(error)) throw StoreError(error);
}

void Conn::reset() {
  PQfinish(c_);
  c_ = nullptr;
  prepared_.clear();
}

std::string Conn::error() const {
  if (!c_) return "not connected";
  std::string e = PQerrorMessage(c_);
  while (!e.empty() && (e.back() == '\n' || e.back() == ' ')) e.pop_back();
  return e;
}

Result Conn::exec(const std::string& sql) {
  if (!c_) return Result();
  return Result(PQexec(c_, sql.c_str()));
}

Result Conn::exec(const std::string& sql, const Params& p) {
  if (!c_) return Result();
  TextParams t(p);
  return Result(PQexecParams(c_, sql.c_str(), t.count(), nullptr, t.values.data(), nullptr, nullptr, 0));
}

bool Conn::ensure_prepared(const std::string& name, const std::string& sql, int nparams) {
  if (std::find(prepared_.begin(), prepared_.end(), name) != prepared_.end()) return true;
  (void)nparams;
  Result r(PQprepare(c_, name.c_str(), sql.c_str(), 0, nullptr));
  if (!r.ok()) return false;
  prepared_.push_back(name);
  return true;
}

Result Conn::exec_prepared(const std::string& name, const std::string& sql, const Params& p) {
  if (!c_) return Result();
  if (!ensure_prepared(name, sql, static_cast<int>(p.size()))) {
    // The reason, as a result.
    return Result(PQprepare(c_, name.c_str(), sql.c_str(), 0, nullptr));
  }
  TextParams t(p);
  return Result(PQexecPrepared(c_, name.c_str(), t.count(), t.values.data(), nullptr, nullptr, 0));
}

bool Conn::send_prepared(const std::string& name, const std::string& sql, const Params& p) {
  (void)sql;
  TextParams t(p);
  return PQsendQueryPrepared(c_, name.c_str(), t.count(), t.values.data(), nullptr, nullptr, 0) == 1;
}

}  // namespace dispatch::data::pg
