// The error type every layer returns: a one-line message in the caller's
// words, with the cause (errno text, libbpf or SQLite message) kept in it.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace depgraph {

struct Error {
    std::string message;
};

// A value or an Error. C++20 has no std::expected; this is the small subset we use.
template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}
    Result(Error error) : v_(std::move(error)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() & { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    const T& value() const& { return std::get<0>(v_); }
    T* operator->() { return &std::get<0>(v_); }
    const T* operator->() const { return &std::get<0>(v_); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    const Error& error() const { return std::get<1>(v_); }

private:
    std::variant<T, Error> v_;
};

struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() { return Ok{}; }

// "what failed: cause" from an errno value.
std::string errno_text(int err);
Error errno_error(const std::string& what, int err);

}  // namespace depgraph
