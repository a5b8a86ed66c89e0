#include "replay/allocator.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <thread>

namespace prl::replay {
namespace {

#ifdef __GLIBC__
// glibc caps the mmap threshold at half its per-thread heap size: 32 MiB on 64-bit systems.
constexpr int kMmapThreshold = 32 << 20;
// Free memory kept at the top of a heap before it is given back: enough for the read buffers
// and messages of many concurrent streams.
constexpr int kTrimThreshold = 256 << 20;
#endif

}  // namespace

absl::Status KeepFreedBuffersForReuse() {
#ifdef __GLIBC__
  // setting either threshold turns off glibc's adaptive thresholds, so set both.
  if (mallopt(M_MMAP_THRESHOLD, kMmapThreshold) != 1 ||
      mallopt(M_TRIM_THRESHOLD, kTrimThreshold) != 1) {
    return absl::InternalError("mallopt refused the mmap or trim threshold");
  }
  const int arenas = std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
  if (mallopt(M_ARENA_MAX, arenas) != 1) {
    return absl::InternalError("mallopt refused the arena limit");
  }
  return absl::OkStatus();
#else
  return absl::UnimplementedError("allocator settings are only known for glibc");
#endif
}

}  // namespace prl::replay
