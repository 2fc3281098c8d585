#include "net/position_parser.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <cmath>
#include <cstring>

namespace json = boost::json;

namespace dispatch::net {

namespace {

using boost::system::error_code;

// The fields a position reads; everything else in the object is skipped, as the general
// path's Reader skips it.
enum class Field : std::uint8_t { type, unit, lat, lon, ts, speed, heading, other };
constexpr unsigned bit(Field f) { return 1u << static_cast<unsigned>(f); }
constexpr unsigned required = bit(Field::type) | bit(Field::unit) | bit(Field::lat) | bit(Field::lon) | bit(Field::ts);

Field field_of(std::string_view k) {
  switch (k.size()) {
    case 2:
      if (k == "ts") return Field::ts;
      break;
    case 3:
      if (k == "lat") return Field::lat;
      if (k == "lon") return Field::lon;
      break;
    case 4:
      if (k == "type") return Field::type;
      if (k == "unit") return Field::unit;
      break;
    case 7:
      if (k == "heading") return Field::heading;
      break;
    case 9:
      if (k == "speed_kmh") return Field::speed;
      break;
    default:
      break;
  }
  return Field::other;
}

class Handler {
 public:
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);

  explicit Handler(std::vector<engine::cmd::Position>& out) : out_(out) {}

  std::size_t count = 0;

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }

  bool on_array_begin(error_code& ec) {
    if (depth_ != 0) return give_up(ec);  // only a batch's own array
    depth_ = 1;
    in_array_ = true;
    return true;
  }
  bool on_array_end(std::size_t n, error_code& ec) {
    if (n == 0) return give_up(ec);  // "an empty batch" is the general path's to say
    depth_ = 0;
    return true;
  }
  bool on_object_begin(error_code& ec) {
    if (depth_ != (in_array_ ? 1 : 0)) return give_up(ec);  // a nested object
    ++depth_;
    seen_ = 0;
    cur_ = &out_.emplace_back();
    return true;
  }
  bool on_object_end(std::size_t, error_code& ec) {
    if ((seen_ & required) != required) return give_up(ec);
    --depth_;
    ++count;
    return true;
  }

  bool on_key_part(json::string_view s, std::size_t, error_code&) {
    key_append(s);
    return true;
  }
  bool on_key(json::string_view s, std::size_t, error_code& ec) {
    key_append(s);
    field_ = key_long_ ? Field::other : field_of(std::string_view(key_, key_len_));
    key_len_ = 0;
    key_long_ = false;
    if (field_ != Field::other) {
      if (seen_ & bit(field_)) return give_up(ec);  // a duplicate key
      seen_ |= bit(field_);
    }
    return true;
  }

  bool on_string_part(json::string_view s, std::size_t, error_code& ec) { return string_part(s, ec); }
  bool on_string(json::string_view s, std::size_t, error_code& ec) {
    if (!string_part(s, ec)) return false;
    if (depth_ != (in_array_ ? 2 : 1)) return give_up(ec);  // a string in a batch's array
    if (field_ == Field::type) {
      if (std::string_view(key_, key_len_) != "position") return give_up(ec);
      key_len_ = 0;
    } else if (field_ == Field::unit) {
      if (cur_->unit.empty() || cur_->unit.size() > 256) return give_up(ec);
    }
    return true;
  }

  bool on_number_part(json::string_view, error_code&) { return true; }
  bool on_int64(std::int64_t i, json::string_view, error_code& ec) {
    if (field_ == Field::ts) return ts(i, ec);
    return number(static_cast<double>(i), ec);
  }
  bool on_uint64(std::uint64_t u, json::string_view, error_code& ec) {
    if (field_ == Field::ts) {
      if (u > static_cast<std::uint64_t>(INT64_MAX)) return give_up(ec);
      return ts(static_cast<std::int64_t>(u), ec);
    }
    return number(static_cast<double>(u), ec);
  }
  bool on_double(double d, json::string_view, error_code& ec) {
    if (field_ == Field::ts) {
      if (std::trunc(d) != d || !(std::abs(d) < 9e15)) return give_up(ec);
      return ts(static_cast<std::int64_t>(d), ec);
    }
    return number(d, ec);
  }
  bool on_bool(bool, error_code& ec) { return scalar_elsewhere(ec); }
  bool on_null(error_code& ec) {
    // Optional fields may be null (absent); a required one null is an error to tell.
    if (field_ == Field::speed || field_ == Field::heading) return value_in_object(ec);
    return scalar_elsewhere(ec);
  }
  bool on_comment_part(json::string_view, error_code& ec) { return give_up(ec); }
  bool on_comment(json::string_view, error_code& ec) { return give_up(ec); }

 private:
  bool give_up(error_code& ec) {
    ec = json::error::syntax;  // any error stops the parser; the caller reads the frame again
    return false;
  }
  // A value directly inside a message object (not the document, not a batch's element).
  bool value_in_object(error_code& ec) {
    if (depth_ != (in_array_ ? 2 : 1)) return give_up(ec);
    return true;
  }
  // true, false or null: only under a key this path does not read.
  bool scalar_elsewhere(error_code& ec) {
    if (!value_in_object(ec)) return false;
    if (field_ != Field::other) return give_up(ec);
    return true;
  }
  bool string_part(json::string_view s, error_code& ec) {
    if (!value_in_object(ec)) return false;
    switch (field_) {
      case Field::type:
        key_append(s);  // the key buffer is free between a key and its value
        if (key_long_) return give_up(ec);
        return true;
      case Field::unit:
        if (cur_->unit.size() + s.size() > 256) return give_up(ec);
        cur_->unit.append(s.data(), s.size());
        return true;
      case Field::other:
        return true;
      default:
        return give_up(ec);  // a string where a number belongs
    }
  }
  bool number(double d, error_code& ec) {
    if (!value_in_object(ec)) return false;
    switch (field_) {
      case Field::lat:
        if (!std::isfinite(d) || d < -90 || d > 90) return give_up(ec);
        cur_->lat = d;
        return true;
      case Field::lon:
        if (!std::isfinite(d) || d < -180 || d > 180) return give_up(ec);
        cur_->lon = d;
        return true;
      case Field::speed:
        if (!std::isfinite(d) || d < 0 || d > 2000) return give_up(ec);
        cur_->speed_kmh = d;
        return true;
      case Field::heading:
        if (!std::isfinite(d) || d < 0 || d > 360) return give_up(ec);
        cur_->heading = d;
        return true;
      case Field::other:
        return true;
      default:
        return give_up(ec);  // a number where a string belongs
    }
  }
  bool ts(std::int64_t i, error_code& ec) {
    if (!value_in_object(ec)) return false;
    if (i < 0 || i > max_message_ts) return give_up(ec);
    cur_->ts = i;
    return true;
  }
  void key_append(json::string_view s) {
    if (key_len_ + s.size() > sizeof key_) {
      key_long_ = true;
      return;
    }
    std::memcpy(key_ + key_len_, s.data(), s.size());
    key_len_ += s.size();
  }

  std::vector<engine::cmd::Position>& out_;
  engine::cmd::Position* cur_ = nullptr;
  int depth_ = 0;
  bool in_array_ = false;
  Field field_ = Field::other;
  unsigned seen_ = 0;
  char key_[16];
  std::size_t key_len_ = 0;
  bool key_long_ = false;
};

}  // namespace

bool parse_positions_fast(std::string_view text, std::vector<engine::cmd::Position>& out,
                          std::size_t& messages) {
  // A position frame starts with its array or object; a cheap look before the parser.
  std::size_t i = 0;
  while (i < text.size() && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t')) ++i;
  if (i == text.size() || (text[i] != '[' && text[i] != '{')) return false;
  const std::size_t before = out.size();
  json::parse_options opts;
  opts.max_depth = 16;
  json::basic_parser<Handler> p(opts, out);
  error_code ec;
  const std::size_t used = p.write_some(false, text.data(), text.size(), ec);
  if (ec || !p.done() || used != text.size()) {  // anything after the document is an error to tell
    out.resize(before);
    return false;
  }
  messages += p.handler().count;
  return true;
}

}  // namespace dispatch::net
