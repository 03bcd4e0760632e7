// fsad::Error and its subclasses. Library code throws; it never exits or aborts.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace fsad {

/// Base of every error fsad throws. what() names the operation and what was wrong.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

/// A file or stream could not be read or written, or its content is malformed.
class IOError : public Error {
public:
    explicit IOError(const std::string& msg) : Error(msg) {}
};

/// A serialized format (safetensors, model file, image) is malformed or unsupported.
class FormatError : public IOError {
public:
    explicit FormatError(const std::string& msg) : IOError(msg) {}
};

/// A CUDA runtime / library call failed: carries the call, the status string, file and line.
class CudaError : public Error {
public:
    explicit CudaError(const std::string& msg) : Error(msg) {}
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
    std::ostringstream os;
    (os << ... << std::forward<Args>(args));
    return os.str();
}
}  // namespace detail

}  // namespace fsad

/// Throws fsad::Error with the streamed message unless `cond` holds.
#define FSAD_CHECK(cond, ...)                                               \
    do {                                                                    \
        if (!(cond)) throw ::fsad::Error(::fsad::detail::concat(__VA_ARGS__)); \
    } while (0)
