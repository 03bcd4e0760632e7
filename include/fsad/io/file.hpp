// Whole files: read one into memory, write one atomically (a temporary file in the same folder,
// fsync, rename), so that a reader never sees half of it and an interrupted write leaves the old
// file in place.
#pragma once
#include <string>

namespace fsad::io {

/// Reads a whole file; throws IOError naming it.
std::string read_file(const std::string& path);
/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
/// Throws IOError naming the file; the temporary file is removed on failure.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace fsad::io
