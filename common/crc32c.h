// CRC-32C (Castagnoli), the checksum of every PRL file: hardware-accelerated with SSE4.2
// where the CPU has it, a table-driven fallback otherwise. Thread-safe (pure functions).
#ifndef PRL_COMMON_CRC32C_H_
#define PRL_COMMON_CRC32C_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace prl {

// Extends `crc` (the CRC-32C of some prefix; 0 for none) with `data`.
uint32_t Crc32cExtend(uint32_t crc, absl::string_view data);

// The CRC-32C of `data`.
inline uint32_t Crc32c(absl::string_view data) { return Crc32cExtend(0, data); }

}  // namespace prl

#endif  // PRL_COMMON_CRC32C_H_
