// safetensors (https://github.com/huggingface/safetensors format): 8-byte little-endian header
// length N, N bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}},
// then the data. The reader validates everything before touching data: the header length is
// bounded, the JSON is parsed by a real parser, dtypes are F32/F16/BF16 (and the integer types
// torchvision uses for counters), shape x dtype size equals the span, spans lie inside the file
// and do not overlap. Values are converted to float32.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "fsad/core/tensor.hpp"
#include "fsad/io/file.hpp"  // read_file, write_file_atomic (declared here before, kept for includers)

namespace fsad::io {

struct SafeTensors {
    std::map<std::string, Tensor> tensors;
    std::map<std::string, std::string> dtypes;  // as stored: "F32", "F16", "BF16", "I64", ...
    std::map<std::string, std::string> metadata;
};

/// Reads and validates `path`; throws fsad::FormatError / IOError naming the file and the problem.
SafeTensors read_safetensors(const std::string& path);
/// Same, from memory; `name` is used in error messages.
SafeTensors parse_safetensors(const uint8_t* data, size_t size, const std::string& name);
/// Writes float32 tensors and string metadata atomically (temporary file, then rename).
void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Reads a NumPy .npy file of little-endian float32 (or float64, converted) in C order.
Tensor read_npy(const std::string& path);

}  // namespace fsad::io
