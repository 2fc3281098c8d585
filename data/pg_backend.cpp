// The PostgreSQL backend (libpq): a write connection (the writer thread's) that sends each
// batch as one pipelined transaction, a read connection, the same schema as SQLite's in
// PostgreSQL's types, and the fencing check that makes a former active's commits fail.
#include <fmt/format.h>

#include <array>
#include <memory>

#include "data/backend.hpp"
#include "data/pg.hpp"
#include "data/pg_schema.hpp"

namespace dispatch::data {

namespace {

// Statements per pipeline sync: each one's answer waits in the socket until the sync, so
// a batch of many thousand writes (a fleet at start) goes in chunks that cannot fill it.
constexpr std::size_t chunk = 256;

std::string write_name(rows::W w) { return "w" + std::to_string(static_cast<int>(w)); }
std::string read_name(rows::R r) { return "r" + std::to_string(static_cast<int>(r)); }

class PgBackend final : public Backend {
 public:
  explicit PgBackend(const StoreOptions& o) : w_(o.path, "write"), r_(o.path, "read") {
    w_.connect_or_throw();
    pg_schema::prepare(w_, pg::redact(o.path));
    r_.connect_or_throw();
  }

  CommitResult commit(const std::vector<Op>& ops, std::string& error, std::int64_t* changes) override {
    if (!w_.connect(error)) return CommitResult::failed;
    if (!prepare_writes(error)) return CommitResult::failed;
    PGconn* c = w_.get();
    if (PQenterPipelineMode(c) != 1) {
      error = w_.error();
      w_.reset();
      return CommitResult::failed;
    }
    Outcome out;
    std::int64_t n = 0;
    std::size_t sent = 0;  // statements sent since the last sync
    auto sync = [&] {
      if (PQpipelineSync(c) != 1) {
        out.fail(w_.error(), "");
        return;
      }
      drain(sent, out, n);
      sent = 0;
    };
    auto send_text = [&](const char* sql) {
      if (PQsendQueryParams(c, sql, 0, nullptr, nullptr, nullptr, nullptr, 0) != 1) out.fail(w_.error(), "");
      ++sent;
    };
    send_text("BEGIN");
    if (epoch_ != 0) {
      if (!w_.send_prepared("fence", "", params(epoch_))) out.fail(w_.error(), "");
      ++sent;
    }
    for (const auto& op : ops) {
      if (!out.ok) break;
      if (!w_.send_prepared(write_name(op.what), "", op.params)) out.fail(w_.error(), "");
      ++sent;
      if (sent >= chunk) sync();
    }
    if (out.ok) send_text("COMMIT");
    sync();
    PQexitPipelineMode(c);
    if (!out.ok) {
      error = out.error;
      if (!w_.connected()) {
        w_.reset();
      } else if (PQtransactionStatus(c) != PQTRANS_IDLE) {
        pg::Result r = w_.exec("ROLLBACK");
        if (!r.ok() || PQpipelineStatus(c) != PQ_PIPELINE_OFF) w_.reset();
      }
      return out.fenced ? CommitResult::fenced : CommitResult::failed;
    }
    if (changes) *changes = n;
    return CommitResult::ok;
  }

  void set_epoch(std::int64_t epoch) override { epoch_ = epoch; }

  void close_writer() override { w_.reset(); }

  bool read(rows::R what, const Params& p, const EachRow& each) override {
    return read_with([&] { return r_.exec_prepared(read_name(what), pg::dollar_params(rows::read_sql(what)), p); },
                     each);
  }

  bool read_text(const std::string& sql, const Params& p, const EachRow& each) override {
    return read_with([&] { return r_.exec(pg::dollar_params(sql), p); }, each);
  }

  void close_reader() override { r_.reset(); }

  bool shared() const override { return true; }

 private:
  struct Outcome {
    bool ok = true;
    bool fenced = false;
    std::string error;
    void fail(const std::string& e, const std::string& sqlstate) {
      if (!ok) return;
      ok = false;
      error = e;
      fenced = sqlstate == pg_schema::fenced_sqlstate;
    }
  };

  // Runs a read; a connection found lost (the server restarted, a failover of the
  // database) is opened again and the read tried once more.
  template <class Exec>
  bool read_with(Exec exec, const EachRow& each) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::string error;
      if (!r_.connect(error)) return false;
      const pg::Result r = exec();
      if (r.ok()) {
        for (int i = 0; i < r.rows(); ++i) each(pg::ResultRow(r, i));
        return true;
      }
      if (r_.connected()) return false;
      r_.reset();
    }
    return false;
  }

  // Reads the answers of `sent` statements and then the sync's.
  void drain(std::size_t sent, Outcome& out, std::int64_t& changes) {
    PGconn* c = w_.get();
    for (std::size_t i = 0; i < sent; ++i) {
      while (PGresult* raw = PQgetResult(c)) {
        pg::Result r(raw);
        const auto st = r.status();
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) changes += r.changes();
        else if (st != PGRES_PIPELINE_ABORTED) out.fail(r.error(), r.sqlstate());
      }
      if (!w_.connected()) {
        out.fail(w_.error(), "");
        return;
      }
    }
    pg::Result s(PQgetResult(c));
    if (s.status() != PGRES_PIPELINE_SYNC) out.fail(s.get() ? s.error() : w_.error(), "");
  }

  bool prepare_writes(std::string& error) {
    if (prepared_for_ == w_.generation()) return true;
    for (std::size_t i = 0; i < static_cast<std::size_t>(rows::W::count_); ++i) {
      const auto w = static_cast<rows::W>(i);
      pg::Result r(PQprepare(w_.get(), write_name(w).c_str(), pg::dollar_params(rows::write_sql(w)).c_str(), 0,
                             nullptr));
      if (!r.ok()) {
        error = "cannot prepare a write: " + r.error();
        return false;
      }
    }
    pg::Result r(PQprepare(w_.get(), "fence", "SELECT dispatch_fence($1)", 0, nullptr));
    if (!r.ok()) {
      error = "cannot prepare the fence: " + r.error();
      return false;
    }
    prepared_for_ = w_.generation();
    return true;
  }

  pg::Conn w_, r_;
  std::uint64_t prepared_for_ = 0;
  std::int64_t epoch_ = 0;
};

}  // namespace

std::unique_ptr<Backend> open_postgres(const StoreOptions& options) { return std::make_unique<PgBackend>(options); }

}  // namespace dispatch::data
