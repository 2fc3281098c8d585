// gpsd's JSON protocol (https://gpsd.io/gpsd_json.html): what the AVL gateway reads.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace dispatch::gateways {

// gpsd asks for this once connected: JSON reports from every device.
inline constexpr std::string_view gpsd_watch = "?WATCH={\"enable\":true,\"json\":true}\n";

struct GpsdTpv {
  std::string device;  // path of the receiver, e.g. /dev/ttyUSB0 (absent: "")
  int mode = 0;        // 0 unknown, 1 no fix, 2 2D, 3 3D
  std::optional<std::int64_t> time_ms;
  std::optional<double> lat, lon;
  std::optional<double> speed_kmh;  // gpsd gives m/s
  std::optional<double> track;      // degrees true
  // A fix worth forwarding: 2D or 3D, with time and position.
  bool usable() const { return mode >= 2 && time_ms && lat && lon; }
};

struct GpsdOther {
  std::string cls;     // VERSION, DEVICES, DEVICE, WATCH, SKY, ERROR, ...
  std::string detail;  // for ERROR: the message; for DEVICE: the path
};

struct GpsdBad {
  std::string reason;
};

// One line of gpsd output.
std::variant<GpsdTpv, GpsdOther, GpsdBad> parse_gpsd_line(std::string_view line);

// ISO 8601 UTC as gpsd writes it ("2019-04-07T00:02:31.420Z") to Unix epoch ms.
std::optional<std::int64_t> parse_iso8601_ms(std::string_view s);

// Which unit a gpsd device speaks for: by path, else the default unit, else none.
class DeviceMap {
 public:
  // "PATH=UNIT"; false when malformed.
  bool add(std::string_view spec);
  void set_default(std::string unit) { default_ = std::move(unit); }
  std::optional<std::string> unit_for(const std::string& device) const;

 private:
  std::map<std::string, std::string, std::less<>> by_path_;
  std::optional<std::string> default_;
};

}  // namespace dispatch::gateways
