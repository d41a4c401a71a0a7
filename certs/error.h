// Refusal reasons as boost::system error codes: each reason has a stable token (for metrics and
// logs) and a sentence (for people), and travels through error_code/result without exceptions.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <string>
#include <string_view>
#include <type_traits>

namespace remora::certs {

template <class T>
using Result = boost::system::result<T>;
using boost::system::error_code;

// One row of a reason table: the enum value, its token and its sentence.
struct ReasonText {
    int value;
    const char* token;
    const char* message;
};

// A category whose codes carry a short token besides the message.
class ReasonCategory : public boost::system::error_category {
  public:
    virtual const char* token(int ev) const noexcept = 0;
};

// The token of a code from a ReasonCategory ("expired", "unknown_kid"), or "other".
std::string_view reason_token(const error_code& ec) noexcept;

// Specialize for each reason enum: static constexpr const char* name; static constexpr ReasonText
// table[].
template <class E>
struct ReasonTable;

template <class E>
class EnumReasonCategory final : public ReasonCategory {
  public:
    const char* name() const noexcept override { return ReasonTable<E>::name; }
    std::string message(int ev) const override { return find(ev).message; }
    const char* token(int ev) const noexcept override { return find(ev).token; }

    static const EnumReasonCategory& instance() {
        static const EnumReasonCategory category;
        return category;
    }

  private:
    static const ReasonText& find(int ev) noexcept {
        static const ReasonText unknown{-1, "other", "unknown reason"};
        for (const ReasonText& row : ReasonTable<E>::table) {
            if (row.value == ev) return row;
        }
        return unknown;
    }
};

template <class E>
error_code make_reason(E e) noexcept {
    return error_code(static_cast<int>(e), EnumReasonCategory<E>::instance());
}

}  // namespace remora::certs
