// Istio's push debounce (PILOT_DEBOUNCE_AFTER, PILOT_DEBOUNCE_MAX): changes that arrive together
// become one push, sent once no change came for `after` (100 ms), or `max` (10 s) after the first
// of them however busy the stream of changes. Time is passed in, so tests drive it by hand.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>

namespace remora::control::server {

class Debouncer {
  public:
    using Clock = std::chrono::steady_clock;
    using Duration = std::chrono::milliseconds;

    Debouncer(Duration after, Duration max) : after_(after), max_(max) {}

    // A change at `now`; returns when the push is due (0 s debounce: at once).
    Clock::time_point change(Clock::time_point now) {
        if (changes_ == 0) first_ = now;
        last_ = now;
        changes_ += 1;
        return due_at();
    }
    // When the pending push is due; nullopt when nothing is pending.
    std::optional<Clock::time_point> due() const {
        if (changes_ == 0) return std::nullopt;
        return due_at();
    }
    // At `now`: true when the pending push is due, and then it is taken (the count of changes it
    // covers is in `merged`); false when nothing is pending or it is not due yet.
    bool take(Clock::time_point now, uint64_t* merged = nullptr) {
        if (changes_ == 0 || now < due_at()) return false;
        if (merged) *merged = changes_;
        changes_ = 0;
        return true;
    }
    bool pending() const { return changes_ > 0; }
    Duration after() const { return after_; }
    Duration max() const { return max_; }

  private:
    Clock::time_point due_at() const { return std::min(last_ + after_, first_ + max_); }

    Duration after_, max_;
    Clock::time_point first_{}, last_{};  // of the pending changes, when there are any
    uint64_t changes_ = 0;                // pending
};

}  // namespace remora::control::server
