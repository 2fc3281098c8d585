// The fast path for frames of positions (a gateway's batch, a unit's ping): read with
// Boost.JSON's SAX parser straight into the engine's commands, with no DOM in between.
// It takes only frames that parse_frame's general path would take whole, with the same
// result; for anything else (another type, a bad field, a duplicate key, a nested value)
// it gives up and the general path reads the frame and says what is wrong.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "engine/engine.hpp"

namespace dispatch::net {

// Latest ts a message may carry (year 3000, in ms); both paths check it.
constexpr std::int64_t max_message_ts = 32503680000000;

// One position object, or a non-empty array of them, every one valid: appends them to
// `out`, adds their count to `messages` and returns true. Otherwise returns false with
// `out` and `messages` as they were.
bool parse_positions_fast(std::string_view text, std::vector<engine::cmd::Position>& out,
                          std::size_t& messages);

}  // namespace dispatch::net
