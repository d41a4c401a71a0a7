// The push debounce (Istio's PILOT_DEBOUNCE_AFTER / PILOT_DEBOUNCE_MAX), on a clock the test
// moves by hand: a burst becomes one push after the quiet period; a change stream that never
// pauses still pushes at the maximum; 0 pushes at once.
#include <doctest/doctest.h>

#include "control/server/debounce.h"

using remora::control::server::Debouncer;
using namespace std::chrono_literals;

namespace {
const Debouncer::Clock::time_point t0 = Debouncer::Clock::time_point(1000s);
}

TEST_CASE("changes arriving together become one push after 100 ms of quiet") {
    Debouncer d(100ms, 10s);
    CHECK_FALSE(d.pending());
    CHECK_FALSE(d.take(t0));
    CHECK(d.change(t0) == t0 + 100ms);
    CHECK(d.change(t0 + 50ms) == t0 + 150ms);
    CHECK(d.change(t0 + 120ms) == t0 + 220ms);
    CHECK_FALSE(d.take(t0 + 150ms));  // the old due time: not yet
    CHECK_FALSE(d.take(t0 + 219ms));
    uint64_t merged = 0;
    CHECK(d.take(t0 + 220ms, &merged));
    CHECK(merged == 3);
    CHECK_FALSE(d.pending());
    CHECK_FALSE(d.take(t0 + 500ms));  // taken: nothing left
    // The next change starts a new batch.
    CHECK(d.change(t0 + 1s) == t0 + 1100ms);
    CHECK(d.take(t0 + 1100ms, &merged));
    CHECK(merged == 1);
}

TEST_CASE("a stream of changes that never pauses is pushed at the maximum") {
    Debouncer d(100ms, 10s);
    auto now = t0;
    int pushes = 0;
    for (int i = 0; i < 250; ++i, now += 50ms) {  // 12.5 s of a change every 50 ms
        d.change(now);
        if (d.take(now)) ++pushes;
        if (d.pending()) CHECK(*d.due() <= now + 100ms);
    }
    CHECK(pushes == 1);  // at t0 + 10 s
    CHECK(d.pending());
    CHECK(*d.due() == now - 50ms + 100ms);
}

TEST_CASE("0 ms debounce pushes every change at once") {
    Debouncer d(0ms, 0ms);
    CHECK(d.change(t0) == t0);
    CHECK(d.take(t0));
}
