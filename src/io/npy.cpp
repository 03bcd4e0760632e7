// NumPy .npy reader (format versions 1-3): C-order little-endian float32 or float64.
#include <cstring>
#include <string>
#include <vector>

#include "fsad/io/file.hpp"
#include "fsad/io/safetensors.hpp"

namespace fsad::io {

Tensor read_npy(const std::string& path) {
    const std::string b = read_file(path);
    auto bad = [&](const std::string& what) -> FormatError { return FormatError(path + ": not a valid .npy file: " + what); };
    if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0) throw bad("missing \\x93NUMPY magic");
    const int major = static_cast<unsigned char>(b[6]);
    size_t hlen, hoff;
    if (major == 1) {
        hlen = static_cast<unsigned char>(b[8]) | static_cast<size_t>(static_cast<unsigned char>(b[9])) << 8;
        hoff = 10;
    } else if (major == 2 || major == 3) {
        if (b.size() < 12) throw bad("truncated header");
        uint32_t l;
        std::memcpy(&l, b.data() + 8, 4);
        hlen = l;
        hoff = 12;
    } else {
        throw bad("unsupported format version " + std::to_string(major));
    }
    if (hoff + hlen > b.size()) throw bad("header runs past the end of the file");
    const std::string h = b.substr(hoff, hlen);
    auto field = [&](const std::string& key) {
        size_t p = h.find("'" + key + "'");
        if (p == std::string::npos) throw bad("header lacks '" + key + "'");
        p = h.find(':', p);
        if (p == std::string::npos) throw bad("malformed header");
        return p + 1;
    };
    size_t p = field("descr");
    size_t q1 = h.find('\'', p), q2 = q1 == std::string::npos ? q1 : h.find('\'', q1 + 1);
    if (q2 == std::string::npos) throw bad("malformed descr");
    const std::string descr = h.substr(q1 + 1, q2 - q1 - 1);
    size_t es;
    if (descr == "<f4") es = 4;
    else if (descr == "<f8") es = 8;
    else throw bad("dtype '" + descr + "' is not supported (expected <f4 or <f8)");
    p = field("fortran_order");
    if (h.compare(h.find_first_not_of(' ', p), 4, "True") == 0) throw bad("Fortran order is not supported");
    p = field("shape");
    size_t lp = h.find('(', p), rp = h.find(')', p);
    if (lp == std::string::npos || rp == std::string::npos || rp < lp) throw bad("malformed shape");
    std::vector<int64_t> dims;
    std::string s = h.substr(lp + 1, rp - lp - 1);
    size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && (s[i] == ' ' || s[i] == ',')) ++i;
        if (i >= s.size()) break;
        size_t j = i;
        while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
        if (j == i || j - i > 12) throw bad("malformed shape '" + s + "'");
        dims.push_back(std::stoll(s.substr(i, j - i)));
        i = j;
    }
    Shape shape(dims);
    const size_t data_off = hoff + hlen;
    if (b.size() - data_off != static_cast<size_t>(shape.numel()) * es)
        throw bad("data has " + std::to_string(b.size() - data_off) + " bytes, shape " + shape.str() + " needs " +
                  std::to_string(static_cast<size_t>(shape.numel()) * es));
    Tensor t = Tensor::empty(shape);
    const char* src = b.data() + data_off;
    for (int64_t k = 0; k < shape.numel(); ++k) {
        if (es == 4) std::memcpy(t.data() + k, src + k * 4, 4);
        else {
            double d;
            std::memcpy(&d, src + k * 8, 8);
            t.data()[k] = static_cast<float>(d);
        }
    }
    return t;
}

}  // namespace fsad::io
