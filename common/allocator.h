// The process's malloc policy for training and serving: keep freed memory for reuse.
//
// Why: a training step allocates and frees the same few-hundred-KiB to MiB tensors every step
// (activations, gradients). With glibc's defaults part of them come from fresh mmap()s or from
// heap pages just returned to the kernel by trimming, so every step page-faults them in again:
// 9-13% of a prior-training step's CPU time was in the kernel's page-fault path
// (docs/benchmarks.md). Raising the mmap threshold and the trim threshold keeps those pages
// mapped; the cost is that up to `trim threshold` of freed memory stays in the process's RSS.
// Environment settings win: with GLIBC_TUNABLES or MALLOC_TRIM_THRESHOLD_ /
// MALLOC_MMAP_THRESHOLD_ set nothing is changed.
#ifndef PRL_COMMON_ALLOCATOR_H_
#define PRL_COMMON_ALLOCATOR_H_

namespace prl {

// Call once at start-up, before threads start. Returns true when the policy was applied (false
// where the environment sets malloc's thresholds or the C library has no mallopt).
bool RetainFreedMemory();

}  // namespace prl

#endif  // PRL_COMMON_ALLOCATOR_H_
