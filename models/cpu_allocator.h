// A caching CPU allocator for LibTorch tensors: freed blocks are kept, by size, for the next
// allocation of that size, so a training loop that allocates the same activations and gradients
// every step stops calling malloc for them and gets back the block it freed last (still warm in
// the cache) — the role PyTorch's CUDA caching allocator plays on the GPU, on the CPU.
// Bounded: blocks beyond `max_cached_bytes` of cached memory are returned to malloc.
// Thread-safe (one mutex; tensors may be freed on any thread).
#ifndef PRL_MODELS_CPU_ALLOCATOR_H_
#define PRL_MODELS_CPU_ALLOCATOR_H_

#include <cstddef>
#include <cstdint>

namespace prl::models {

struct CpuAllocatorStats {
  int64_t allocations = 0;   // allocate() calls with n > 0
  int64_t cache_hits = 0;    // of them, served from the cache
  int64_t cached_bytes = 0;  // held for reuse now
  int64_t live_bytes = 0;    // handed out and not yet freed
};

// Makes the caching allocator LibTorch's CPU allocator for every tensor allocated from now on
// (tensors that exist keep their own deleters). Idempotent; the first call's bound holds.
void InstallCachingCpuAllocator(size_t max_cached_bytes = size_t{1} << 30);

// False before InstallCachingCpuAllocator.
bool CachingCpuAllocatorInstalled();

CpuAllocatorStats CachingCpuAllocatorStats();

}  // namespace prl::models

#endif  // PRL_MODELS_CPU_ALLOCATOR_H_
