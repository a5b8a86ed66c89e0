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
// one, gives heap memory back to the kernel only when more than 256 MiB of it lies free at the
// top, and keeps to one malloc arena per core (at least two). Call early in main, before other
// threads allocate. Errors: INTERNAL when the C library refuses a setting; UNIMPLEMENTED on C
// libraries other than glibc.
//
// Why the arena limit: glibc gives each thread an arena of its own, up to 8 per core. An arena
// other than the main one grows in separately mapped heaps, and a heap that lies entirely free
// at the top of its arena is unmapped at once, whatever the trim threshold. gRPC's socket reads
// land on whichever thread polls, and received messages are freed by the handler threads, so
// with many arenas the read buffers kept coming back as fresh pages (a quarter of a million
// page faults per three seconds of 16 streamed image writers); with one arena per core they
// are reused.
absl::Status KeepFreedBuffersForReuse();

}  // namespace prl::replay

#endif  // PRL_REPLAY_ALLOCATOR_H_
