// A small append-only JSON writer: events are rendered once per release, straight into
// one string, without building a DOM.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace dispatch::net {

class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}

  JsonWriter& begin_object() { return open('{'); }
  JsonWriter& end_object() { return close('}'); }
  JsonWriter& begin_array() { return open('['); }
  JsonWriter& end_array() { return close(']'); }

  JsonWriter& key(std::string_view k) {
    comma();
    string_raw(k);
    out_ += ':';
    after_key_ = true;
    return *this;
  }
  JsonWriter& value(std::string_view s) {
    comma();
    string_raw(s);
    return *this;
  }
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(bool b) {
    comma();
    out_ += b ? "true" : "false";
    return *this;
  }
  JsonWriter& value(std::int64_t v) { return integer(v); }
  JsonWriter& value(int v) { return integer(v); }
  JsonWriter& value(unsigned v) { return integer(v); }
  JsonWriter& value(std::uint64_t v) { return integer(v); }
  JsonWriter& value(double v) {
    comma();
    if (!std::isfinite(v)) {
      out_ += "null";
      return *this;
    }
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, r.ptr);
    return *this;
  }
  // A coordinate: 7 decimals is about 1 cm.
  JsonWriter& coord(double v) {
    comma();
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 7);
    // trim trailing zeros for compactness
    char* end = r.ptr;
    while (end > buf && end[-1] == '0') --end;
    if (end > buf && end[-1] == '.') --end;
    out_.append(buf, end);
    return *this;
  }
  JsonWriter& null() {
    comma();
    out_ += "null";
    return *this;
  }
  // A value that is null when zero (times not yet reached).
  JsonWriter& time_or_null(std::int64_t v) { return v ? value(v) : null(); }
  JsonWriter& string_or_null(std::string_view s) { return s.empty() ? null() : value(s); }
  // Pre-rendered JSON.
  JsonWriter& raw(std::string_view json) {
    comma();
    out_ += json;
    return *this;
  }

  template <class T>
  JsonWriter& field(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }

 private:
  template <class I>
  JsonWriter& integer(I v) {
    comma();
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, r.ptr);
    return *this;
  }
  JsonWriter& open(char c) {
    comma();
    out_ += c;
    first_ = true;
    return *this;
  }
  JsonWriter& close(char c) {
    out_ += c;
    first_ = false;
    return *this;
  }
  void comma() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_) out_ += ',';
    first_ = false;
  }
  // Escapes a string. Text frames must be valid UTF-8 (a client's WebSocket closes on
  // anything else), so an invalid or cut sequence becomes U+FFFD here, whatever the source.
  void string_raw(std::string_view s) {
    out_ += '"';
    std::size_t i = 0;
    while (i < s.size()) {
      // A run of printable ASCII other than '"' and '\\' (nearly every key and value) is
      // appended as it is, in one piece.
      std::size_t j = i;
      while (j < s.size() && plain(static_cast<unsigned char>(s[j]))) ++j;
      if (j > i) {
        out_.append(s.data() + i, j - i);
        i = j;
        if (i == s.size()) break;
      }
      const auto c = static_cast<unsigned char>(s[i]);
      if (c >= 0x80) {
        const std::size_t n = utf8_sequence(s, i);
        if (n == 0) {
          out_ += "\ufffd";
          ++i;
        } else {
          out_.append(s.data() + i, n);
          i += n;
        }
        continue;
      }
      switch (c) {
        case '"': out_ += "\\\""; break;
        case '\\': out_ += "\\\\"; break;
        case '\n': out_ += "\\n"; break;
        case '\r': out_ += "\\r"; break;
        case '\t': out_ += "\\t"; break;
        default:
          if (c < 0x20 || c == 0x7f) {
            static constexpr char hex[] = "0123456789abcdef";
            out_ += "\\u00";
            out_ += hex[c >> 4];
            out_ += hex[c & 15];
          } else {
            out_ += static_cast<char>(c);
          }
      }
      ++i;
    }
    out_ += '"';
  }
  static constexpr bool plain(unsigned char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; }

 public:
  // The length of the valid UTF-8 sequence starting at s[i] (a non-ASCII lead byte), or 0
  // when it is invalid (bad lead, cut short, overlong, surrogate, above U+10FFFF).
  static std::size_t utf8_sequence(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
    const unsigned char c = b(0);
    if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
      if (!cont(1) || !cont(2)) return 0;
      if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
      if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogates
      return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
      if (!cont(1) || !cont(2) || !cont(3)) return 0;
      if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
      if (c == 0xF4 && b(1) >= 0x90) return 0;  // above U+10FFFF
      return 4;
    }
    return 0;
  }
  // The longest prefix of s of at most `max_bytes` that does not cut a UTF-8 sequence.
  static std::string_view utf8_prefix(std::string_view s, std::size_t max_bytes) {
    if (s.size() <= max_bytes) return s;
    std::size_t end = max_bytes;
    while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
    return s.substr(0, end);
  }

 private:
  std::string& out_;
  bool first_ = true;
  bool after_key_ = false;
};

}  // namespace dispatch::net
