// Configure-time check that clang++-14 can link a libFuzzer target.
#include <cstddef>
#include <cstdint>
extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, std::size_t) {
    return 0;
}
