// Allocator settings for processes that move large gRPC messages: prl_replay, and writers that
// stream big inserts to it.
//
// gRPC allocates a fresh buffer for every socket read and every message it encodes. With
// glibc's defaults, freed blocks of more than 128 KiB go back to the kernel (unmapped, or trimmed
// off the top of the heap), so the next message faults in and zeroes every 4 KiB page again; on
// the 64x64x3 image insert benchmark (docs/benchmarks.md) that was about a fifth of the CPU time.
// These settings keep such blocks in the process for reuse. Stateless; thread-safe.
#ifndef PRL_REPLAY_ALLOCATOR_H_
#define PRL_REPLAY_ALLOCATOR_H_

#include "absl/status/status.h"

namespace prl::replay {

// Serves blocks of up to 32 MiB (the most glibc allows) from the heap instead of mapping each
// one, and gives heap memory back to the kernel only when more than 256 MiB of it lies free at
// the top. Call early in main. Errors: INTERNAL when the C library refuses a setting;
// UNIMPLEMENTED on C libraries other than glibc.
absl::Status KeepFreedBuffersForReuse();

}  // namespace prl::replay

#endif  // PRL_REPLAY_ALLOCATOR_H_
