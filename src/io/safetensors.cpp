#include "fsad/io/safetensors.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "fsad/core/error.hpp"
#include "fsad/io/file.hpp"

namespace fsad::io {
namespace {

constexpr uint64_t kMaxHeader = 100u << 20;  // the reference implementation's bound

[[noreturn]] void bad(const std::string& name, const std::string& what) {
    throw FormatError(name + ": not a valid safetensors file: " + what);
}

size_t dtype_size(const std::string& dt) {
    if (dt == "F32" || dt == "I32") return 4;
    if (dt == "F16" || dt == "BF16" || dt == "I16") return 2;
    if (dt == "F64" || dt == "I64") return 8;
    if (dt == "I8" || dt == "U8" || dt == "BOOL") return 1;
    return 0;
}

float half_to_float(uint16_t h) {
    const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal: renormalise
            int e = -1;
            uint32_t m = man;
            do {
                ++e;
                m <<= 1;
            } while ((m & 0x400u) == 0);
            bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (m & 0x3ffu) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

template <class T>
T load_le(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));  // the project targets little-endian hosts (x86-64, aarch64)
    return v;
}

}  // namespace

SafeTensors parse_safetensors(const uint8_t* data, size_t size, const std::string& name) {
    if (size < 8) bad(name, "file has " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
    const uint64_t n = load_le<uint64_t>(data);
    if (n > kMaxHeader) bad(name, "header length " + std::to_string(n) + " exceeds the 100 MiB limit");
    if (n > size - 8) bad(name, "header length " + std::to_string(n) + " runs past the end of the file (" +
                                    std::to_string(size) + " bytes; truncated?)");
    nlohmann::json h;
    try {
        h = nlohmann::json::parse(data + 8, data + 8 + n);
    } catch (const nlohmann::json::exception& e) {
        bad(name, std::string("header is not valid JSON (") + e.what() + ")");
    }
    if (!h.is_object()) bad(name, "header is not a JSON object");
    const uint8_t* base = data + 8 + n;
    const uint64_t data_size = size - 8 - n;

    SafeTensors out;
    struct Span {
        uint64_t b, e;
        std::string key;
    };
    std::vector<Span> spans;
    for (auto it = h.begin(); it != h.end(); ++it) {
        const std::string& key = it.key();
        const nlohmann::json& v = it.value();
        if (key == "__metadata__") {
            if (!v.is_object()) bad(name, "__metadata__ is not an object");
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string()) bad(name, "__metadata__ value of '" + m.key() + "' is not a string");
                out.metadata[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        if (!v.is_object()) bad(name, "entry '" + key + "' is not an object");
        auto dt = v.find("dtype");
        auto sh = v.find("shape");
        auto of = v.find("data_offsets");
        if (dt == v.end() || sh == v.end() || of == v.end())
            bad(name, "entry '" + key + "' lacks dtype, shape or data_offsets");
        if (!dt->is_string()) bad(name, "dtype of '" + key + "' is not a string");
        const std::string dtype = dt->get<std::string>();
        const size_t es = dtype_size(dtype);
        if (es == 0 || dtype == "BOOL" || dtype == "U8" || dtype == "I8")
            bad(name, "tensor '" + key + "' has unsupported dtype '" + dtype + "' (expected F32, F16, BF16, F64, I64, I32)");
        if (!sh->is_array() || sh->size() > static_cast<size_t>(Shape::kMaxDims))
            bad(name, "shape of '" + key + "' is not an array of at most " + std::to_string(Shape::kMaxDims) + " dimensions");
        std::vector<int64_t> dims;
        uint64_t numel = 1;
        for (const auto& d : *sh) {
            if (!d.is_number_unsigned()) bad(name, "shape of '" + key + "' has a non-integer or negative dimension");
            uint64_t x = d.get<uint64_t>();
            if (x > (uint64_t(1) << 40) || (x && numel > std::numeric_limits<uint64_t>::max() / x / 8))
                bad(name, "shape of '" + key + "' is too large");
            numel *= x;
            dims.push_back(static_cast<int64_t>(x));
        }
        if (!of->is_array() || of->size() != 2 || !(*of)[0].is_number_unsigned() || !(*of)[1].is_number_unsigned())
            bad(name, "data_offsets of '" + key + "' is not a pair of non-negative integers");
        const uint64_t b = (*of)[0].get<uint64_t>(), e = (*of)[1].get<uint64_t>();
        if (b > e) bad(name, "data_offsets of '" + key + "' are reversed");
        if (e > data_size)
            bad(name, "tensor '" + key + "' ends at byte " + std::to_string(e) + " but the data section has " +
                          std::to_string(data_size) + " bytes (truncated?)");
        if (e - b != numel * es)
            bad(name, "tensor '" + key + "' spans " + std::to_string(e - b) + " bytes but shape x " + dtype +
                          " needs " + std::to_string(numel * es));
        spans.push_back({b, e, key});

        Tensor t = Tensor::empty(Shape(dims));
        float* dst = t.data();
        const uint8_t* src = base + b;
        for (uint64_t i = 0; i < numel; ++i) {
            const uint8_t* p = src + i * es;
            float f;
            if (dtype == "F32") f = load_le<float>(p);
            else if (dtype == "F16") f = half_to_float(load_le<uint16_t>(p));
            else if (dtype == "BF16") {
                uint32_t bits = static_cast<uint32_t>(load_le<uint16_t>(p)) << 16;
                std::memcpy(&f, &bits, 4);
            } else if (dtype == "F64") f = static_cast<float>(load_le<double>(p));
            else if (dtype == "I64") f = static_cast<float>(load_le<int64_t>(p));
            else if (dtype == "I32") f = static_cast<float>(load_le<int32_t>(p));
            else f = static_cast<float>(load_le<int16_t>(p));
            dst[i] = f;
        }
        out.tensors[key] = t;
        out.dtypes[key] = dtype;
    }
    std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& c) { return a.b < c.b; });
    size_t last = 0;  // the span reaching furthest so far
    for (size_t i = 1; i < spans.size(); ++i) {
        if (spans[i].e > spans[i].b && spans[i].b < spans[last].e)
            bad(name, "tensors '" + spans[last].key + "' and '" + spans[i].key + "' overlap");
        if (spans[i].e > spans[last].e) last = i;
    }
    return out;
}

SafeTensors read_safetensors(const std::string& path) {
    std::string bytes = read_file(path);
    return parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
}

void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    nlohmann::json h = nlohmann::json::object();
    if (!metadata.empty()) h["__metadata__"] = metadata;
    uint64_t off = 0;
    for (const auto& [k, t] : tensors) {
        FSAD_CHECK(k != "__metadata__", "write_safetensors: '__metadata__' is reserved");
        FSAD_CHECK(t.defined(), "write_safetensors: tensor '", k, "' is undefined");
        uint64_t nb = static_cast<uint64_t>(t.numel()) * 4;
        h[k] = {{"dtype", "F32"}, {"shape", t.shape().vec()}, {"data_offsets", {off, off + nb}}};
        off += nb;
    }
    std::string header = h.dump();
    while ((header.size() + 8) % 8) header.push_back(' ');
    std::string bytes(8, '\0');
    uint64_t hn = header.size();
    std::memcpy(bytes.data(), &hn, 8);
    bytes += header;
    bytes.reserve(bytes.size() + off);
    for (const auto& [k, t] : tensors) {
        std::vector<float> v = t.to_vector();
        bytes.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
    }
    write_file_atomic(path, bytes);
}

}  // namespace fsad::io
